"""The messaging plugin's settings (``[plugin.messaging]``, ``FHIRHUB_MESSAGING_*``)."""

from __future__ import annotations

from fhirhub.sdk import PluginSettings


class MessagingSettings(PluginSettings):
    #: Appointment reminders go out this long before the appointment starts.
    reminder_lead_s: float = 86400.0
    #: How often the reminder schedule looks for appointments entering the lead time.
    reminder_check_s: float = 300.0
    #: Seconds between keep-alive comments on an idle live stream.
    keepalive_s: float = 15.0
