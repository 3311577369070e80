"""Install the OHIF Viewer's built ``dist/`` from the npm registry, pinned and checked.

``python -m fhirhub.plugins.ohif.install`` (``make ohif``; ``make run`` and ``make test`` call
it): when ``npm`` is on the PATH, ``npm pack @ohif/app@<VERSION>`` fetches the one package
tarball (npm checks it against the registry's integrity value), the tarball's SHA-512 is
checked against :data:`INTEGRITY` pinned here, and ``package/dist`` is unpacked into
``plugins/ohif/dist/`` (git-ignored). Nothing else is fetched: the package ships a built
viewer, so no dependency is installed and no build runs. Installed once: a later call sees
the stamp file and returns at once.

The build is made for the site root (``/``); two text rewrites serve it under
:data:`MOUNT` instead: ``index.html`` (its absolute links, its inline scripts moved into
``fhirhub-boot.js`` so that the page's Content-Security-Policy needs no ``'unsafe-inline'``
script, the service worker left out) and webpack's public path in the bundles that set it, and the
stylesheets' root-relative ``url(/...)``.
The shipped ``app-config.js`` (a public demo server) is removed: the plugin serves its own.

Without npm it prints why and exits 0: the DICOM adapter's built-in viewer stays the viewer.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
#: ``npm view @ohif/app@3.13.2 dist.integrity``: the tarball must hash to this.
INTEGRITY = "sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
#: Where the plugin serves the viewer (``/plugins/<plugin name>/viewer/``).
MOUNT = "/plugins/ohif/viewer/"
#: The installed viewer (git-ignored: ``dist/``).
DIST = Path(__file__).resolve().parent / "dist"
STAMP = ".fhirhub-ohif.json"
BOOT = "fhirhub-boot.js"
NPM_TIMEOUT_S = 600
PUBLIC_PATH = '__webpack_require__.p = "/";'
#: Bumped when :func:`patch` changes, so that an older installation is redone.
PATCH_LEVEL = "3"


class InstallError(RuntimeError):
    """The package could not be fetched, checked or unpacked."""


def installed(dist: Path = DIST) -> dict[str, str] | None:
    """The stamp of the viewer installed in ``dist`` (version, integrity, mount), or None
    when none is, or another version or mount is."""
    try:
        stamp = json.loads((dist / STAMP).read_text())
    except (OSError, ValueError):
        return None
    wanted = {
        "package": PACKAGE,
        "version": VERSION,
        "integrity": INTEGRITY,
        "mount": MOUNT,
        "patch_level": PATCH_LEVEL,
    }
    if not isinstance(stamp, dict) or any(stamp.get(k) != v for k, v in wanted.items()):
        return None
    if not (dist / "index.html").is_file():
        return None
    return {str(k): str(v) for k, v in stamp.items()}


def integrity_of(path: Path) -> str:
    """The Subresource Integrity value (``sha512-<base64>``) npm records for a tarball."""
    digest = hashlib.sha512()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def fetch(npm: str, into: Path) -> Path:
    """``npm pack`` the pinned version into ``into``; the tarball's path."""
    command = [npm, "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(into), "--json"]
    env = {**os.environ, "npm_config_update_notifier": "false", "npm_config_fund": "false"}
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, env=env, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise InstallError(f"npm pack did not finish in {NPM_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        raise InstallError(f"npm pack {PACKAGE}@{VERSION} failed: {done.stderr.strip()[-800:]}")
    tarballs = sorted(into.glob("*.tgz"))
    if len(tarballs) != 1:
        raise InstallError(f"npm pack left {len(tarballs)} tarballs in {into}")
    return tarballs[0]


def unpack(tarball: Path, into: Path) -> Path:
    """``package/dist`` of the tarball, unpacked under ``into`` (regular files and folders
    only, nothing outside it: tarfile's ``data`` filter)."""
    with tarfile.open(tarball, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name.startswith("package/dist/")]
        if not any(m.name == "package/dist/index.html" for m in members):
            raise InstallError(f"{tarball.name} has no package/dist/index.html")
        archive.extractall(into, members=members, filter="data")
    return into / "package" / "dist"


def rewrite_index(text: str, mount: str = MOUNT) -> tuple[str, str]:
    """``index.html`` for ``mount``, and the boot script its inline scripts became."""
    inline = re.findall(r"<script>(.*?)</script>", text, flags=re.S)
    boot = ";\n".join(s.strip().rstrip(";") for s in inline) + ";\n"
    boot = boot.replace('window.PUBLIC_URL="/"', f"window.PUBLIC_URL={json.dumps(mount)}")
    if f"window.PUBLIC_URL={json.dumps(mount)}" not in boot:
        raise InstallError("index.html does not set window.PUBLIC_URL as expected")
    text = re.sub(r"<script>.*?</script>", "", text, flags=re.S)
    # the service worker (offline caching of the app) is not wanted for clinical data
    text = re.sub(r"<script[^>]*init-service-worker\.js[^>]*></script>", "", text)
    text = re.sub(r'(href|src)="/(?!/)', rf'\1="{mount}', text)
    text = text.replace("<title>", f'<script src="{mount}{BOOT}"></script><title>', 1)
    return text, boot


def patch(dist: Path, mount: str = MOUNT) -> tuple[list[str], list[str]]:
    """Make the root-built viewer work under ``mount``; the names of the files changed, and
    those of the web workers' entry scripts (bundles with their own webpack runtime that
    load their chunks with ``importScripts``)."""
    changed = []
    workers = []
    index = dist / "index.html"
    text, boot = rewrite_index(index.read_text(encoding="utf-8"), mount)
    index.write_text(text, encoding="utf-8")
    (dist / BOOT).write_text(boot, encoding="utf-8")
    changed += ["index.html", BOOT]
    for path in sorted(dist.glob("*.js")):
        data = path.read_bytes()
        if PUBLIC_PATH.encode() in data:
            replaced = f"__webpack_require__.p = {json.dumps(mount)};"
            path.write_bytes(data.replace(PUBLIC_PATH.encode(), replaced.encode()))
            changed.append(path.name)
            if not path.name.startswith("app.bundle") and b"importScripts" in data:
                workers.append(path.name)
    for path in sorted(dist.glob("*.css")):  # fonts: url(/x.woff2)
        text = path.read_text(encoding="utf-8")
        fixed = re.sub(r"url\((['\"]?)/(?!/)", rf"url(\1{mount}", text)
        if fixed != text:
            path.write_text(fixed, encoding="utf-8")
            changed.append(path.name)
    if not any(name.startswith("app.bundle") for name in changed):
        raise InstallError("no app.bundle*.js sets webpack's public path as expected")
    for name in ("app-config.js", "init-service-worker.js", "sw.js", "_redirects", "_headers"):
        (dist / name).unlink(missing_ok=True)
    return changed, workers


def install(dist: Path = DIST, npm: str | None = None) -> str:
    """Install the pinned viewer into ``dist`` unless it is there; a line saying what was
    done. Raises :class:`InstallError` when it cannot be fetched or does not check out."""
    if installed(dist):
        return f"OHIF Viewer {VERSION} already installed in {dist}"
    npm = npm or shutil.which("npm")
    if npm is None:
        return (
            "OHIF Viewer not installed: npm is not on the PATH (install Node.js 20 and npm, "
            "then run make ohif); the built-in DICOM viewer is used"
        )
    dist.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ohif-", dir=dist.parent) as work:
        tarball = fetch(npm, Path(work))
        found = integrity_of(tarball)
        if found != INTEGRITY:
            raise InstallError(
                f"{tarball.name} has integrity {found}, not the pinned {INTEGRITY}: not installed"
            )
        unpacked = unpack(tarball, Path(work) / "x")
        changed, workers = patch(unpacked)
        stamp = {
            "package": PACKAGE,
            "version": VERSION,
            "integrity": INTEGRITY,
            "mount": MOUNT,
            "patch_level": PATCH_LEVEL,
            "patched": ",".join(changed),
            "workers": ",".join(workers),
        }
        (unpacked / STAMP).write_text(json.dumps(stamp, indent=1))
        if dist.exists():
            shutil.rmtree(dist)
        unpacked.rename(dist)
    return f"OHIF Viewer {VERSION} installed in {dist} ({INTEGRITY[:20]}... checked)"


def main() -> int:
    try:
        print(install())
    except InstallError as exc:
        print(f"OHIF Viewer not installed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
