"""The plugin's routes on a hub with authentication on: the viewer's files are public shells
under their own Content-Security-Policy, its configuration points at this hub's DICOMweb and
passes the user's token, the shell lists it only when it is installed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import build_hub
from fhirhub.plugins.ohif import install
from fhirhub.plugins.ohif.routes import VIEWER_CSP, WORKER_CSP
from tests.conftest import make_settings


def fake_dist(folder: Path) -> Path:
    folder.mkdir()
    (folder / "index.html").write_text("<!doctype html><title>OHIF Viewer</title>")
    (folder / "app.bundle.1.js").write_text("run()")
    (folder / "codec.wasm").write_bytes(b"\0asm\1\0\0\0")
    (folder / "8097.bundle.js").write_text("importScripts('x.js')")
    stamp = {
        "package": install.PACKAGE,
        "version": install.VERSION,
        "integrity": install.INTEGRITY,
        "mount": install.MOUNT,
        "patch_level": install.PATCH_LEVEL,
        "workers": "8097.bundle.js",
    }
    (folder / install.STAMP).write_text(json.dumps(stamp))
    (folder.parent / "secret.txt").write_text("outside the viewer")
    return folder


@pytest.fixture
def client(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    monkeypatch.setenv("FHIRHUB_OHIF_DIST", str(fake_dist(tmp_path / "viewer")))
    hub = build_hub(make_settings(sqlite_url, tmp_path, auth="on"))
    with TestClient(create_app(hub=hub)) as client:
        yield client
    hub.close()


def test_viewer_files_are_public_with_their_own_policy(client: TestClient) -> None:
    page = client.get("/plugins/ohif/viewer/")
    assert page.status_code == 200 and "OHIF Viewer" in page.text
    assert page.headers["content-security-policy"] == VIEWER_CSP
    assert (
        "'unsafe-eval'" not in VIEWER_CSP and "script-src 'self' 'wasm-unsafe-eval'" in VIEWER_CSP
    )
    assert page.headers["x-frame-options"] == "SAMEORIGIN"
    # routes of the single-page app answer its page; missing files do not
    route = client.get("/plugins/ohif/viewer/viewer", params={"StudyInstanceUIDs": "1.2.3"})
    assert route.status_code == 200 and route.text == page.text
    assert client.get("/plugins/ohif/viewer/missing.js").status_code == 404
    script = client.get("/plugins/ohif/viewer/app.bundle.1.js")
    assert script.headers["content-type"].startswith("text/javascript")
    # the codecs' workers, and they alone, may build functions from strings (embind)
    worker = client.get("/plugins/ohif/viewer/8097.bundle.js")
    assert worker.headers["content-security-policy"] == WORKER_CSP
    assert "'unsafe-eval'" in WORKER_CSP
    assert script.headers["content-security-policy"] == VIEWER_CSP
    assert client.get("/plugins/ohif/viewer/codec.wasm").headers["content-type"] == (
        "application/wasm"
    )
    assert client.get("/plugins/ohif/viewer/..%2Fsecret.txt").status_code == 404
    assert "outside" not in client.get("/plugins/ohif/viewer/../secret.txt").text
    # the hub's other pages keep the stricter policy
    assert "wasm-unsafe-eval" not in client.get("/ui/patients").headers["content-security-policy"]
    # the data is not public
    assert client.get("/plugins/dicom/dicomweb/studies").status_code == 401


def test_app_config_points_at_this_hubs_dicomweb_with_the_token(client: TestClient) -> None:
    config = client.get("/plugins/ohif/viewer/app-config.js")
    assert config.status_code == 200
    assert config.headers["content-type"].startswith("text/javascript")
    text = config.text
    assert '"dicomweb": "/plugins/dicom/dicomweb"' in text
    assert "window.location.origin + settings.dicomweb" in text
    assert 'sessionStorage.getItem("fhirhub.token")' in text
    assert 'Authorization: "Bearer " + token()' in text
    assert "cloudfront" not in text and "https://" not in text  # nothing off this hub


def test_status_and_navigation(client: TestClient, tmp_path: Path) -> None:
    status = client.get("/plugins/ohif/status").json()
    assert status["installed"] is True and status["version"] == install.VERSION
    assert status["viewer"] == "/plugins/ohif/viewer/"
    shell = client.get("/ui/page", params={"path": "/plugins/ohif/viewer/"})
    assert shell.status_code == 200
    # uninstalled: no menu entry, the files and configuration are gone, status says so
    (tmp_path / "viewer" / install.STAMP).unlink()
    assert client.get("/plugins/ohif/status").json()["installed"] is False
    assert client.get("/plugins/ohif/viewer/").status_code == 404
    assert client.get("/plugins/ohif/viewer/app-config.js").status_code == 404
    assert client.get("/ui/page", params={"path": "/plugins/ohif/viewer/"}).status_code == 404
