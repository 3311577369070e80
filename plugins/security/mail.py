"""Outgoing email: every message is written to the outbox table first (operators read it
there); when ``FHIRHUB_SMTP_URL`` is set (``smtp://user:pass@host:587`` with STARTTLS,
``smtps://...`` for implicit TLS) it is also sent, and marked sent.

Secrets a message carries (an invitation token) are given apart: the outbox keeps the text
with each replaced by ``[sent by email only]``, so the database never holds one in clear."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

from sqlalchemy import insert, select, update

from fhirhub.plugins.security.state import Security, now
from fhirhub.plugins.security.tables import outbox
from fhirhub.sdk import smtp_send

log = logging.getLogger("fhirhub.security.mail")


REDACTED = "[sent by email only]"


def send_email(
    sec: Security, recipient: str, subject: str, body: str, secrets: tuple[str, ...] = ()
) -> bool:
    """Record the message in the outbox (``secrets`` blanked) and send it when SMTP is
    configured; whether it was sent."""
    stored = body
    for secret in secrets:
        stored = stored.replace(secret, REDACTED)
    with sec.engine.begin() as conn:
        result = conn.execute(
            insert(outbox).values(recipient=recipient, subject=subject, body=stored, created=now())
        )
        message_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    if not sec.config.smtp_url:
        return False
    try:
        smtp_send(sec.config.smtp_url, sec.config.mail_from, recipient, subject, body)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("Email to %s was not sent; SMTP failed: %s", recipient, exc)
        return False
    with sec.engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == message_id).values(sent=now()))
    return True


def read_outbox(sec: Security, recipient: str | None = None) -> list[dict[str, Any]]:
    query = select(outbox).order_by(outbox.c.id)
    if recipient is not None:
        query = query.where(outbox.c.recipient == recipient)
    with sec.engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
