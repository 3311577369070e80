"""The plugin's state per hub: settings, the registered models, the run store; and the two
moving parts of the pipeline: the consumer that notes every changed ImagingStudy and the
schedule that hands quiet studies to the ``imaging_ai.analyse`` task (Celery when a broker
is configured, the hub's in-process pool otherwise)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import orjson

from fhirhub.plugins.imaging_ai.analysis import analyse_study, study_uid_of
from fhirhub.plugins.imaging_ai.models import OnnxModel, load_models
from fhirhub.plugins.imaging_ai.runs import run_store
from fhirhub.plugins.imaging_ai.settings import PLUGIN_NAME, ImagingAiSettings
from fhirhub.sdk import Hub, HubLocal, StoredVersion, plugin_settings

log = logging.getLogger("fhirhub.imaging_ai")
TASK = "imaging_ai.analyse"


class ImagingAi:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.settings: ImagingAiSettings = plugin_settings(hub, PLUGIN_NAME, ImagingAiSettings)
        cache = self.settings.model_cache or Path(hub.settings.data_dir) / PLUGIN_NAME / "models"
        self.models: dict[str, OnnxModel] = load_models(self.settings.models, Path(cache))
        self.runs = run_store(hub)

    def note_versions(self, versions: Sequence[StoredVersion]) -> None:
        """Consumer: each new ImagingStudy version restarts its study's quiet period."""
        now = time.time()
        for version in versions:
            if version.resource_type != "ImagingStudy" or version.deleted:
                continue
            study = orjson.loads(version.content or b"{}")
            uid = study_uid_of(study)
            if uid:
                self.runs.study_changed(version.tenant or "", version.resource_id, uid, now)

    def dispatch_quiet(self, hub: Hub) -> None:
        """Schedule: claim each study quiet for ``quiet_seconds`` and submit its analysis."""
        for tenant, study_id in self.runs.quiet_studies(self.settings.quiet_seconds, time.time()):
            if self.runs.claim(tenant, study_id):
                log.info("Analysing ImagingStudy/%s (tenant %s)", study_id, tenant or "-")
                if hub.tasks is not None:
                    hub.tasks.submit(TASK, tenant, study_id)
                else:  # a hub without a task runner: analyse here
                    self.analyse(tenant, study_id)

    def analyse(self, tenant: str, study_id: str) -> list[str]:
        return analyse_study(self.hub, self.models, self.settings, tenant, study_id)


_services: HubLocal[ImagingAi] = HubLocal("imaging_ai.service")


def service_of(hub: Hub) -> ImagingAi:
    return _services.setdefault(hub, lambda: ImagingAi(hub))
