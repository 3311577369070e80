"""``[plugin.imaging_ai]`` settings (environment ``FHIRHUB_IMAGING_AI_...``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from fhirhub.sdk import PluginSettings

PLUGIN_NAME = "imaging_ai"


class Route(BaseModel):
    """Which model runs on which studies. Empty lists match anything. ``model = "*"`` runs
    every model whose card fits the series (modality, body part); a route naming one model
    runs it on every series the filters select, and a series the card does not fit then makes
    a failed run that says why."""

    model: str = "*"
    modalities: list[str] = Field(default_factory=list)
    body_parts: list[str] = Field(default_factory=list)
    aets: list[str] = Field(default_factory=list)  # Source AE Title (0002,0016) in the file
    #: The C-STORE association's calling AE title (the modality) and called AE title (the
    #: title it addressed this node by), as the archive recorded them.
    calling_aets: list[str] = Field(default_factory=list)
    called_aets: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)


class ModelSource(BaseModel):
    """A model registered by URL: the ``.onnx`` file (``http(s)://`` or ``file://``) with the
    SHA-256 it must have, and its card. Fetched once into ``model_cache`` and checked."""

    model: str
    sha256: str
    card: str
    #: Optional: the card's own SHA-256, checked when given.
    card_sha256: str | None = None


class ImagingAiSettings(PluginSettings):
    #: Further models: paths of cards (``card.json`` beside its ``.onnx``), or
    #: :class:`ModelSource` tables (by URL, with a SHA-256); the shipped
    #: ``synthetic-opacity`` demonstration model is always registered.
    models: list[str | ModelSource] = Field(default_factory=list)
    #: Where models registered by URL are kept (default ``<data_dir>/imaging_ai/models``).
    model_cache: str | None = None
    routes: list[Route] = Field(default_factory=lambda: [Route()])
    #: A study is analysed once no new instance arrived for this many seconds.
    quiet_seconds: float = 10.0
    #: How often studies are checked for quiet (seconds).
    poll_seconds: float = 1.0
    #: Findings below this probability are recorded in the run, not offered in the report.
    offer_threshold: float = 0.1
    #: Store each image's regions back in the archive as a DICOM Segmentation (highdicom).
    overlays: bool = True
    #: ``false``: nothing is analysed automatically (the models are still listed).
    analyse: bool = True
    #: Seed the demo study (synthetic chest phantom) when the store holds the demo patients.
    demo: bool = True

    def route_models(self) -> list[Route]:
        return list(self.routes)


def as_dict(settings: ImagingAiSettings) -> dict[str, Any]:
    return settings.model_dump()
