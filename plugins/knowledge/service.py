"""The knowledge plugin of one hub: its settings and graph index."""

from __future__ import annotations

from typing import Literal

from fhirhub.plugins.knowledge.index import GraphIndex
from fhirhub.sdk import Hub, HubLocal, PluginSettings, plugin_settings

PLUGIN_NAME = "knowledge"


class KnowledgeSettings(PluginSettings):
    """``[plugin.knowledge]`` in ``fhirhub.toml`` or ``FHIRHUB_KNOWLEDGE_*`` (docs/knowledge.md)."""

    #: Check every MedicationRequest write and record a DetectedIssue per finding.
    check_orders: bool = True
    #: Refuse (422) a write with a finding of this severity or worse, unless the order carries
    #: an override reason; "" never refuses.
    block_severity: Literal["", "high", "moderate", "low"] = ""
    #: Load the shipped sources at startup when the store holds the demo patients and the
    #: graph is empty (``fhirhub serve --demo``).
    load_with_demo: bool = True


class KnowledgeService:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: KnowledgeSettings = plugin_settings(hub, PLUGIN_NAME, KnowledgeSettings)
        self.index = GraphIndex(hub)


_services: HubLocal[KnowledgeService] = HubLocal("knowledge.service")


def service_of(hub: Hub) -> KnowledgeService:
    return _services.setdefault(hub, lambda: KnowledgeService(hub))
