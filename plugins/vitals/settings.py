"""``[plugin.vitals]`` in ``fhirhub.toml`` or ``FHIRHUB_VITALS_*`` (docs/vitals.md)."""

from __future__ import annotations

from typing import Literal

from fhirhub.sdk import PluginSettings

PLUGIN_NAME = "vitals"


class VitalsSettings(PluginSettings):
    #: Each parameter's most recent value within this many minutes of the newest is scored.
    window_minutes: float = 60.0
    #: The lowest NEWS2 risk band that raises an alert.
    alert_from: Literal["low-medium", "medium", "high"] = "low-medium"
    #: Whether a positive qSOFA raises an alert of its own.
    qsofa_alerts: bool = True
    #: Scores whose newest input is older than this raise no alert (a backfill or a replay of
    #: history must not page anyone); they are still written.
    alert_max_age_minutes: float = 120.0
    #: Who is told, in order: a role name (shown as such) or a reference
    #: (``PractitionerRole/...``, ``CareTeam/...``, ``Practitioner/...``).
    escalation_chain: list[str] = ["nurse", "charge-nurse", "rapid-response-team"]
    #: Minutes an alert waits unacknowledged at each step of the chain before the next.
    escalation_minutes: list[float] = [15.0, 15.0]
    #: How often the escalation schedule looks for alerts due (seconds).
    escalation_check_seconds: float = 15.0
    #: Deadline of the response Task, in minutes after the alert, per risk band.
    response_minutes: dict[str, float] = {
        "low-medium": 60.0,
        "medium": 30.0,
        "high": 10.0,
        "positive": 30.0,
    }
    #: Pause after a batch that scored several sets (a steady feed), so that the feed is
    #: scored in larger batches (ms); a lone set is never delayed by it.
    batch_pause_ms: float = 500.0
    #: Refuse Observations whose vital-signs values cannot be real (SpO2 140 %).
    reject_impossible: bool = True
