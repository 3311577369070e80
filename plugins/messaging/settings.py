"""The messaging plugin's settings (``[plugin.messaging]``, ``FHIRHUB_MESSAGING_*``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field

from fhirhub.sdk import PluginSettings


class MessagingSettings(PluginSettings):
    #: Appointment reminders go out this long before the appointment starts.
    reminder_lead_s: float = 86400.0
    #: How often the reminder schedule looks for appointments entering the lead time.
    reminder_check_s: float = 300.0
    #: Seconds between keep-alive comments on an idle live stream.
    keepalive_s: float = 15.0
    #: The hub's SMTP server, shared with invitation emails (``FHIRHUB_SMTP_URL``):
    #: ``smtp://user:pass@host:587`` (STARTTLS when offered) or ``smtps://...``. Empty: no
    #: notification is emailed.
    smtp_url: str = Field("", validation_alias=AliasChoices("smtp_url", "FHIRHUB_SMTP_URL"))
    mail_from: str = Field(
        "fhirhub@localhost", validation_alias=AliasChoices("mail_from", "FHIRHUB_MAIL_FROM")
    )
    #: How often the email schedule sends what is due.
    email_check_s: float = 10.0
    #: The wait before the first retry of a failed email; it doubles with each attempt.
    email_retry_s: float = 30.0
    #: The longest wait between two attempts.
    email_retry_max_s: float = 3600.0
    #: Attempts before an email is given up (status ``failed``).
    email_max_attempts: int = 8
