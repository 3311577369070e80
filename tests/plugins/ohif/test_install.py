"""The OHIF installer: pinned version and integrity, nothing without npm, the build moved
under the plugin's mount, installed once. A stand-in ``npm`` (a script that packs a small
tarball shaped like ``@ohif/app``) keeps these tests offline and fast."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from pathlib import Path

import pytest

from fhirhub.plugins.ohif import install

INDEX = (
    '<!doctype html><html><head><script>console.time("x"),window.PUBLIC_URL="/"</script>'
    '<link rel="manifest" href="/manifest.json"><script src="/app-config.js"></script>'
    '<script type="module" src="/init-service-worker.js"></script><title>OHIF Viewer</title>'
    '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
    '<script defer src="/app.bundle.abc.js"></script><link href="/app.bundle.css" rel="stylesheet">'
    '<a href="//example.org/x">x</a></head><body></body></html>'
)
FILES = {
    "package/package.json": '{"name": "@ohif/app", "version": "3.13.2"}',
    "package/dist/index.html": INDEX,
    "package/dist/app.bundle.abc.js": 'x();__webpack_require__.p = "/";y();',
    "package/dist/12.bundle.js": "no public path here",
    "package/dist/8097.bundle.js": 'importScripts(a);__webpack_require__.p = "/";',
    "package/dist/app.bundle.css": "@font-face{src:url(/f.woff2)}a{b:url(data:x)}",
    "package/dist/app-config.js": "window.config = {wadoRoot: 'https://public.example'}",
    "package/dist/init-service-worker.js": "register()",
}


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def fake_npm(folder: Path, data: bytes, log: Path) -> str:
    """A script that answers ``npm pack <spec> --pack-destination DIR --json`` with ``data``."""
    source = folder / "ohif-app-3.13.2.tgz.src"
    source.write_bytes(data)
    script = folder / "npm"
    script.write_text(
        f'#!/bin/sh\necho "$@" >> "{log}"\ncp "{source}" "$4/ohif-app-3.13.2.tgz"\necho \'[]\'\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_rewrite_index_moves_inline_scripts_and_links_under_the_mount() -> None:
    html, boot = install.rewrite_index(INDEX, "/m/")
    assert "<script>" not in html
    assert 'src="/m/app.bundle.abc.js"' in html and 'href="/m/manifest.json"' in html
    assert 'href="//example.org/x"' in html  # protocol-relative links are left alone
    assert "init-service-worker" not in html
    assert '<script src="/m/fhirhub-boot.js"></script><title>' in html
    assert 'window.PUBLIC_URL="/m/"' in boot and "function browserImportFunction" in boot
    with pytest.raises(install.InstallError):
        install.rewrite_index("<html><script>other()</script></html>")


def test_install_checks_the_pinned_integrity(tmp_path: Path) -> None:
    log = tmp_path / "npm.log"
    npm = fake_npm(tmp_path, tarball(FILES), log)
    dist = tmp_path / "dist"
    with pytest.raises(install.InstallError, match="not the pinned"):
        install.install(dist, npm=npm)
    assert not dist.exists()
    assert "pack @ohif/app@3.13.2 --pack-destination" in log.read_text()
    assert list(tmp_path.glob(".ohif-*")) == []  # the work folder is gone


def test_install_once_under_the_mount(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tarball(FILES)
    log = tmp_path / "npm.log"
    npm = fake_npm(tmp_path, data, log)
    (tmp_path / "t.tgz").write_bytes(data)
    monkeypatch.setattr(install, "INTEGRITY", install.integrity_of(tmp_path / "t.tgz"))
    dist = tmp_path / "dist"
    assert "installed in" in install.install(dist, npm=npm)
    stamp = install.installed(dist)
    assert stamp is not None and stamp["version"] == install.VERSION
    assert stamp["mount"] == "/plugins/ohif/viewer/"
    assert stamp["workers"] == "8097.bundle.js"  # served with the workers' policy
    bundle = (dist / "app.bundle.abc.js").read_text()
    assert bundle == 'x();__webpack_require__.p = "/plugins/ohif/viewer/";y();'
    assert (dist / "12.bundle.js").read_text() == "no public path here"
    css = (dist / "app.bundle.css").read_text()
    assert "url(/plugins/ohif/viewer/f.woff2)" in css and "url(data:x)" in css
    assert not (dist / "app-config.js").exists()  # the plugin serves its own
    assert not (dist / "init-service-worker.js").exists()
    assert not (dist / "package.json").exists()  # only dist/ is unpacked
    # a second call finds it and asks npm nothing
    calls = log.read_text()
    assert "already installed" in install.install(dist, npm=npm)
    assert log.read_text() == calls
    # another pinned version (or patch level) is installed afresh
    monkeypatch.setattr(install, "PATCH_LEVEL", "next")
    assert install.installed(dist) is None


def test_without_npm_nothing_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    message = install.install(tmp_path / "dist")
    assert "npm is not on the PATH" in message and "built-in DICOM viewer" in message
    assert not (tmp_path / "dist").exists()


def test_a_tarball_without_a_build_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tarball({"package/package.json": "{}", "package/../../evil": "x"})
    npm = fake_npm(tmp_path, data, tmp_path / "npm.log")
    (tmp_path / "t.tgz").write_bytes(data)
    monkeypatch.setattr(install, "INTEGRITY", install.integrity_of(tmp_path / "t.tgz"))
    with pytest.raises(install.InstallError, match="no package/dist/index.html"):
        install.install(tmp_path / "dist", npm=npm)
    assert not (tmp_path.parent / "evil").exists()


def test_the_stamp_must_match(tmp_path: Path) -> None:
    (tmp_path / "index.html").write_text("x")
    (tmp_path / install.STAMP).write_text(json.dumps({"version": "0.0.1"}))
    assert install.installed(tmp_path) is None
