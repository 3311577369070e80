"""The optional fhir.resources stage (FHIRHUB_VALIDATE_MODELS) runs in every write path."""

from __future__ import annotations

from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import build_hub
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.validation.models import model_error
from tests.core.fhir_samples import observation, patient


def test_model_stage_reports_paths() -> None:
    assert model_error(patient()) is None
    error = model_error({**observation("Patient/1"), "valueQuantity": {"value": "lots"}})
    assert error is not None and error.status == 400
    assert error.issues[0].expression == ("Observation.valueQuantity.value",)


def test_model_stage_is_applied_when_enabled(sqlite_url: str, tmp_path: Path) -> None:
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, validate_models=True))
    with TestClient(create_app(hub=hub)) as client:
        ok = client.post("/fhir/Patient", content=orjson.dumps(patient()))
        assert ok.status_code == 201
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{"resource": patient(), "request": {"method": "POST", "url": "Patient"}}],
        }
        assert client.post("/fhir", content=orjson.dumps(bundle)).status_code == 200
    hub.store.engine.dispose()
