"""Models registered by URL: fetched once from a loopback HTTP server (or a file:// URL) into
the cache, checked against the configured SHA-256, refused on a mismatch, and never fetched
again once the cache holds them, also by a hub started on it."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import build_hub
from fhirhub.plugins.imaging_ai.models import SHIPPED, ModelError, load_models
from fhirhub.plugins.imaging_ai.settings import ModelSource
from tests.conftest import make_settings


class Served:
    def __init__(self, folder: Path) -> None:
        self.requests: list[str] = []
        served = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, directory=str(folder), **kwargs)

            def do_GET(self) -> None:
                served.requests.append(self.path)
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def published(tmp_path: Path) -> Iterator[tuple[Served, str]]:
    """The shipped model published as ``url-opacity`` 2.0.0; yields the server and the
    model's SHA-256."""
    folder = tmp_path / "www"
    folder.mkdir()
    shutil.copy(SHIPPED.parent / "model.onnx", folder / "url-opacity.onnx")
    card = json.loads(SHIPPED.read_text())
    card.update(id="url-opacity", version="2.0.0", file="url-opacity.onnx")
    (folder / "card.json").write_text(json.dumps(card))
    served = Served(folder)
    yield served, hashlib.sha256((folder / "url-opacity.onnx").read_bytes()).hexdigest()
    served.server.shutdown()


def source(served: Served, sha256: str, **extra: str) -> ModelSource:
    return ModelSource(
        model=f"{served.base}/url-opacity.onnx",
        sha256=sha256,
        card=f"{served.base}/card.json",
        **extra,
    )


def test_fetched_once_checked_and_cached(published: tuple[Served, str], tmp_path: Path) -> None:
    served, sha256 = published
    cache = tmp_path / "cache"
    models = load_models([source(served, sha256)], cache)
    assert set(models) == {"synthetic-opacity", "url-opacity"}
    assert served.requests == ["/url-opacity.onnx", "/card.json"]
    model = models["url-opacity"]
    assert model.card.version == "2.0.0"
    assert model.card.path == (cache / sha256 / "model.onnx").resolve()
    images = np.zeros((1, model.card.height, model.card.width), dtype=np.float32)
    assert len(model.predict(images)[0].probabilities) == 2
    # the cache holds it: no request at all from now on
    again = load_models([source(served, sha256)], cache)
    assert again["url-opacity"].card.path == model.card.path
    assert len(served.requests) == 2
    # a file:// URL is a copy into the cache
    local = ModelSource(
        model=(tmp_path / "www" / "url-opacity.onnx").as_uri(),
        sha256=sha256,
        card=(tmp_path / "www" / "card.json").as_uri(),
    )
    assert load_models([local], tmp_path / "cache2")["url-opacity"].card.version == "2.0.0"


def test_mismatch_and_bad_sources_are_refused(
    published: tuple[Served, str], tmp_path: Path
) -> None:
    served, sha256 = published
    cache = tmp_path / "cache"
    wrong = "0" * 64
    with pytest.raises(
        ModelError, match=f"has SHA-256 {sha256}, the configuration expects {wrong}"
    ):
        load_models([source(served, wrong)], cache)
    assert not (cache / wrong).exists()  # nothing refused stays in the cache
    with pytest.raises(ModelError, match="Model card .* has SHA-256"):
        load_models([source(served, sha256, card_sha256="1" * 64)], cache)
    with pytest.raises(ModelError, match="64 hexadecimal digits"):
        load_models([source(served, "abc")], cache)
    bad_scheme = ModelSource(model="ftp://example/m.onnx", sha256=sha256, card="ftp://x/c.json")
    with pytest.raises(ModelError, match="only http, https, file URLs"):
        load_models([bad_scheme], cache)
    missing = ModelSource(model=f"{served.base}/nope.onnx", sha256=sha256, card="file:///nope")
    with pytest.raises(ModelError, match="cannot be fetched"):
        load_models([missing], cache)
    # a file changed in the cache is fetched again, not used
    load_models([source(served, sha256)], cache)
    (cache / sha256 / "model.onnx").write_bytes(b"tampered")
    before = len(served.requests)
    load_models([source(served, sha256)], cache)
    assert len(served.requests) == before + 2
    assert hashlib.sha256((cache / sha256 / "model.onnx").read_bytes()).hexdigest() == sha256


def test_a_hub_registers_the_model_from_its_configuration(
    published: tuple[Served, str], tmp_path: Path, sqlite_url: str
) -> None:
    from fhirhub.core.http.app import create_app

    served, sha256 = published
    config = {"models": [source(served, sha256).model_dump()], "demo": False}
    settings = make_settings(
        sqlite_url,
        tmp_path / "data",
        listeners=False,
        auth="off",
        plugin_config={"imaging_ai": config},
    )
    hub = build_hub(settings)
    try:
        with TestClient(create_app(hub=hub)) as client:
            listed = client.get("/plugins/imaging_ai/models").json()
        assert "url-opacity" in {m["id"] for m in listed["models"]}
        assert (tmp_path / "data" / "imaging_ai" / "models" / sha256 / "model.onnx").is_file()
    finally:
        hub.close()
