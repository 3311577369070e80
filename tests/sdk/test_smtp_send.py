"""``smtp_send``: the SDK's one SMTP client, against a real SMTP server on loopback."""

from __future__ import annotations

import smtplib

import pytest

from fhirhub.sdk import smtp_send
from tests.plugins.messaging.smtp_receiver import SmtpReceiver


def test_a_mail_is_delivered_with_its_sender_recipient_subject_and_text() -> None:
    with SmtpReceiver() as smtp:
        smtp_send(
            f"smtp://127.0.0.1:{smtp.port}", "hub@example.org", "nurse@example.org", "Hi", "Body"
        )
        (mail,) = smtp.received
    assert mail.sender == "hub@example.org" and mail.recipients == ["nurse@example.org"]
    assert mail.message["Subject"] == "Hi"
    assert mail.message.get_content().strip() == "Body"


def test_starttls_is_asked_for_when_the_server_offers_it_and_a_refusal_is_an_error() -> None:
    """The server's extensions are known only after EHLO: a client that asked before it never
    saw STARTTLS offered and sent the mail (and any password) in clear."""
    with SmtpReceiver(offer_starttls=True) as smtp:
        with pytest.raises(smtplib.SMTPException):
            smtp_send(f"smtp://127.0.0.1:{smtp.port}", "hub@example.org", "a@example.org", "s", "b")
        assert "STARTTLS" in smtp.verbs
        assert smtp.received == []
