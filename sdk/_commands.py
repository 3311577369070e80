"""Helpers for plugin commands (``register_commands``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import load_settings


@contextmanager
def command_hub(**flags: Any) -> Iterator[Hub]:
    """A hub for a command-line command: the same settings as ``fhirhub serve`` would use
    (``flags`` such as ``db=...`` override them; ``None`` means not given), listeners off
    (a command must not bind the HL7 or DICOM ports of a running hub), closed afterwards."""
    flags = {"listeners": False, **flags}
    hub = build_hub(load_settings(**flags))
    try:
        yield hub
    finally:
        hub.close()
