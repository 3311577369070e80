"""End to end through ``fhirhub serve``: storescu -> the served DICOM listener -> FHIR REST
search and DICOMweb over real HTTP."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.adapters.dicom.conftest import NODE_AET, dcmtk_env, dicomdir_files, free_port, need_dcmtk
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow


def test_storescu_to_served_hub(sqlite_url: str, tmp_path: Path) -> None:
    need_dcmtk()
    dicom_port = free_port()
    config = tmp_path / "fhirhub.toml"
    config.write_text('[plugin.dicom]\nallowed_aes = ["STORESCU"]\n')  # storescu's default AE
    env = {
        "FHIRHUB_DICOM_PORT": str(dicom_port),
        "FHIRHUB_CONFIG": str(config),
        "FHIRHUB_LISTENERS": "on",
    }
    server = LiveServer(sqlite_url, tmp_path, env=env).start()
    try:
        files = [str(p) for p in dicomdir_files() if "98892003" in p.parts]
        sent = subprocess.run(
            ["storescu", "-aec", NODE_AET, "127.0.0.1", str(dicom_port), *files],
            env=dcmtk_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        uid = "1.3.6.1.4.1.5962.1.1.0.0.0.1196533885.18148.0.1"
        deadline = time.monotonic() + 20
        while True:
            bundle = httpx.get(
                f"{server.fhir}/ImagingStudy", params={"identifier": f"urn:dicom:uid|urn:oid:{uid}"}
            ).json()
            entries = bundle.get("entry", [])
            if entries and entries[0]["resource"]["numberOfInstances"] == 11:
                break
            assert time.monotonic() < deadline, bundle
            time.sleep(0.2)
        study = entries[0]["resource"]
        assert study["numberOfSeries"] == 3
        endpoint = httpx.get(f"{server.fhir}/{study['endpoint'][0]['reference']}").json()
        assert endpoint["address"].endswith("/plugins/dicom/dicomweb")
        qido = httpx.get(
            f"{server.base}/plugins/dicom/dicomweb/studies", params={"PatientID": "98890234"}
        )
        assert qido.status_code == 200 and len(qido.json()) == 3
        health = httpx.get(f"{server.base}/healthz").json()
        assert health["checks"]["dicom-listener"] == "ok"
    finally:
        server.stop()
