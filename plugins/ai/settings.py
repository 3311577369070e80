"""The assistant's settings (``[plugin.ai]`` in ``fhirhub.toml``, ``FHIRHUB_AI_*``).

The API key is deliberately not a setting: it is read from ``FHIRHUB_AI_API_KEY`` only, so it
never sits in a TOML file that is copied around or printed by ``fhirhub config``.
"""

from __future__ import annotations

import os
from urllib.parse import urlparse

from fhirhub.sdk import Hub, HubLocal, PluginSettings, plugin_settings

PLUGIN_NAME = "ai"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class AiSettings(PluginSettings):
    #: An OpenAI-compatible server (``https://api.openai.com/v1``, vLLM, llama.cpp, Ollama's
    #: ``/v1``). Unset: the deterministic extractive provider answers (docs/ai.md).
    base_url: str | None = None
    #: The model name sent to that server.
    model: str | None = None
    #: Whether the model runs outside the hospital, so identifiers are stripped from what is
    #: sent. Unset: external unless ``base_url`` is on the loopback interface.
    external: bool | None = None
    #: Seconds to wait for the model.
    timeout_s: float = 60.0
    #: Tool rounds the model may run before it must answer.
    max_tool_rounds: int = 4
    #: Retrieved chunks given to the model per question.
    top_k: int = 5
    #: Characters per retrieval chunk.
    chunk_chars: int = 700
    #: An OpenAI-compatible embeddings endpoint (``…/v1``) for hybrid retrieval; unset: lexical.
    embeddings_base_url: str | None = None
    #: The embedding model name sent to it.
    embeddings_model: str | None = None
    #: NCBI E-utilities (``https://eutils.ncbi.nlm.nih.gov/entrez/eutils``); unset: no PubMed tool.
    pubmed_base_url: str | None = None
    #: ClinicalTrials.gov API v2 (``https://clinicaltrials.gov/api/v2``); unset: no trials tool.
    clinicaltrials_base_url: str | None = None
    #: MedlinePlus Connect (``https://connect.medlineplus.gov/service``); unset: no tool.
    medlineplus_base_url: str | None = None
    #: Keep the retrieval index in step with the store (a consumer of the version log).
    index: bool = True

    def model_configured(self) -> bool:
        return bool(self.base_url and self.model)

    def is_external(self) -> bool:
        if self.external is not None:
            return self.external
        host = urlparse(self.base_url or "").hostname or ""
        return host not in LOOPBACK_HOSTS

    def api_key(self) -> str:
        """The key for the model server: ``FHIRHUB_AI_API_KEY`` only (module docstring)."""
        return os.environ.get("FHIRHUB_AI_API_KEY", "") or "unused"


_settings: HubLocal[AiSettings] = HubLocal("ai.settings")


def settings_of(hub: Hub) -> AiSettings:
    return _settings.setdefault(hub, lambda: plugin_settings(hub, PLUGIN_NAME, AiSettings))
