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
