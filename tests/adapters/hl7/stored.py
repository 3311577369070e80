"""Helpers for tests that send a message written in the test and read back what the hub
stored (through the hub's own search), and the ERR segments of its ACK."""

from __future__ import annotations

from typing import Any

import orjson

from fhirhub.adapters.hl7.processing import Outcome, handle
from fhirhub.core.hub import Hub
from fhirhub.core.interactions.search import search_bundle


def send(hub: Hub, text: str) -> Outcome:
    """Process ``text`` (segments one per line, as written in a test) as the wire has it."""
    raw = "\r".join(line.strip() for line in text.strip().splitlines()) + "\r"
    return handle(hub, raw.encode("utf-8"))


def stored(hub: Hub, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """The current resources of ``resource_type`` matching ``params`` (a FHIR search)."""
    with hub.store.read() as conn:
        bundle = search_bundle(hub, conn, resource_type, list(params.items()), base_url="")
    return [entry["resource"] for entry in orjson.loads(bundle).get("entry", [])]


def history(hub: Hub, resource_type: str, resource_id: str) -> list[dict[str, Any]]:
    """Every version of one resource, newest first (``_history``)."""
    from fhirhub.core.interactions.read import history_bundle

    with hub.store.read() as conn:
        bundle = history_bundle(conn, "", [], resource_type, resource_id)
    return [
        entry["resource"] for entry in orjson.loads(bundle).get("entry", []) if "resource" in entry
    ]


def errs(ack: bytes) -> list[list[str]]:
    """The ERR segments of an ACK, each as its fields (``[1]`` is ERR-1 ... ``[8]`` ERR-8)."""
    return [line.split("|") for line in ack.decode("utf-8").split("\r") if line.startswith("ERR|")]


def warned(ack: bytes) -> dict[str, str]:
    """ERR-2 location (``OBX^2^5^1^2``) -> ERR-8 text, for the warnings (ERR-4 = W)."""
    return {err[2]: err[8] for err in errs(ack) if err[4] == "W"}
