"""Sending one email through the hub's SMTP settings (``FHIRHUB_SMTP_URL``): the one SMTP
client every plugin uses (invitations, notification emails), so TLS and login work alike."""

from __future__ import annotations

import smtplib
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit


def smtp_send(url: str, sender: str, recipient: str, subject: str, body: str) -> None:
    """Send a plain-text email through ``url``: ``smtp://user:pass@host:587`` (STARTTLS when
    the server offers it), ``smtps://...`` (implicit TLS). Raises ``OSError`` or
    ``smtplib.SMTPException`` when it was not sent; the caller decides about retrying."""
    parts = urlsplit(url)
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, recipient, subject
    message.set_content(body)
    smtp_class = smtplib.SMTP_SSL if parts.scheme == "smtps" else smtplib.SMTP
    with smtp_class(parts.hostname or "localhost", parts.port or 0, timeout=10) as smtp:
        smtp.ehlo_or_helo_if_needed()  # the server's extensions are known only after EHLO
        if parts.scheme == "smtp" and smtp.has_extn("starttls"):
            smtp.starttls()
        if parts.username:
            smtp.login(unquote(parts.username), unquote(parts.password or ""))
        smtp.send_message(message)
