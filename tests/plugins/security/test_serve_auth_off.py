"""``fhirhub serve`` refuses FHIRHUB_AUTH=off on a non-loopback address."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_serve_with_auth_off_on_all_interfaces_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "FHIRHUB_AUTH": "off", "FHIRHUB_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Refusing to serve on 0.0.0.0 with FHIRHUB_AUTH=off" in result.stderr
