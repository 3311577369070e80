"""The HL7 adapter's settings: ``[plugin.hl7]`` in ``fhirhub.toml`` or ``FHIRHUB_HL7_*``
(the environment wins), read with the SDK's one settings mechanism."""

from __future__ import annotations

import os

from fhirhub.sdk import Hub, PluginSettings, Settings, plugin_settings


class Hl7Settings(PluginSettings):
    #: MLLP listener port (``FHIRHUB_HL7_PORT``): a number, ``0`` for any free port, ``off``.
    port: str = "2575"
    #: Worker processes converting MLLP frames ahead of the writer; default one where the
    #: machine has a second core (``FHIRHUB_HL7_CONVERT_PROCESSES``; ``0`` turns them off).
    convert_processes: int | None = None
    #: Outbound feed ``host:port`` for ADT^A04/A08 and ORU^R01 (``FHIRHUB_HL7_OUTBOUND``;
    #: empty or ``off``: none).
    outbound: str = ""
    #: Sending application and facility (``APP@FACILITY``, MSH-3.1 and MSH-4.1; ``*`` for any
    #: application or any facility) -> the tenant (Organization id) its messages belong to.
    #: In TOML a table under ``[plugin.hl7.senders]``; in the environment JSON
    #: (``FHIRHUB_HL7_SENDERS='{"LAB@NORTH": "north"}'``).
    senders: dict[str, str] = {}
    #: Optional peer addresses per sender (``APP@FACILITY`` -> addresses or networks, e.g.
    #: ``["10.1.2.0/24"]``): a message naming that sender from any other address is refused.
    sender_peers: dict[str, list[str]] = {}
    #: Whether messages from senders not in ``senders`` are accepted (written for the hub's
    #: ``default_tenant``, or for no tenant). Unset: accepted only while ``senders`` is empty
    #: (a single-hospital hub); refused with AR once any sender is mapped.
    accept_unknown_senders: bool | None = None
    #: Most dead letters stored per feed (tenant, or peer address for unknown senders) per
    #: hour; beyond it failures are still answered AE/AR and logged, but not stored.
    dead_letters_per_hour: int = 600

    @property
    def listener_port(self) -> int | None:
        value = self.port.strip().lower()
        if value in ("off", "", "none", "false", "disabled"):
            return None
        return int(value)

    @property
    def workers(self) -> int:
        if self.convert_processes is not None:
            return max(0, self.convert_processes)
        return 1 if (os.cpu_count() or 1) > 1 else 0


def hl7_settings(hub: Hub | Settings) -> Hl7Settings:
    settings: Hl7Settings = plugin_settings(hub, "hl7", Hl7Settings)
    return settings
