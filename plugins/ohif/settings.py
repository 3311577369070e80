"""``[plugin.ohif]`` settings (environment ``FHIRHUB_OHIF_...``)."""

from __future__ import annotations

from pathlib import Path

from fhirhub.plugins.ohif.install import DIST
from fhirhub.sdk import Hub, PluginSettings, plugin_settings

PLUGIN_NAME = "ohif"


class OhifSettings(PluginSettings):
    #: The installed viewer (``python -m fhirhub.plugins.ohif.install`` fills the default).
    dist: str = ""
    #: The DICOMweb root the viewer reads (the DICOM adapter's, on this origin).
    dicomweb: str = "/plugins/dicom/dicomweb"

    def dist_path(self) -> Path:
        return Path(self.dist) if self.dist else DIST


def settings_of(hub: Hub) -> OhifSettings:
    settings: OhifSettings = plugin_settings(hub, PLUGIN_NAME, OhifSettings)
    return settings
