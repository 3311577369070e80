"""Access to the Synthea corpus in ../shared (absent on some machines: tests then skip)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

SYNTHEA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "synthea"


def synthea_bundles(limit_files: int | None = None) -> list[dict[str, Any]]:
    """The Synthea transaction Bundles, in file name order (skips the test when absent)."""
    if not SYNTHEA.is_dir():
        pytest.skip(f"Synthea data not present at {SYNTHEA}")
    files = sorted(SYNTHEA.glob("*.json"))[:limit_files]
    return [orjson.loads(path.read_bytes()) for path in files]


def synthea_resources(limit_files: int | None = None) -> list[dict[str, Any]]:
    """Every entry resource of the Synthea transaction Bundles, in file order."""
    return [
        entry["resource"] for bundle in synthea_bundles(limit_files) for entry in bundle["entry"]
    ]
