"""Outbound feed: FHIR -> ADT/ORU ER7 that our own inbound side reads back to the same facts,
and delivery over a real MLLP socket with retry, back-off and dead letters."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from fhirhub.adapters.hl7.convert import convert
from fhirhub.adapters.hl7.outbound import Destination, adt_message, deliver, oru_message
from fhirhub.adapters.hl7.parsing import parse
from fhirhub.core.hub import Hub
from tests.adapters.hl7.conftest import fixture


def resources(bundle: dict[str, Any], rtype: str) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_adt_round_trip_keeps_the_patient_facts() -> None:
    (patient,) = resources(convert(parse(fixture("adt_a01.hl7"))), "Patient")
    message = parse(adt_message(patient, "A08"))
    assert message.message_type == "ADT^A08"
    (again,) = resources(convert(message), "Patient")
    for key in ("birthDate", "gender", "address"):
        assert again[key] == patient[key]
    assert again["name"][0]["family"] == "Doe"
    assert [i["value"] for i in again["identifier"]][:2] == ["MRN123", "999-11-2222"]


def test_oru_round_trip_keeps_codes_values_and_units() -> None:
    bundle = convert(parse(fixture("oru_r01.hl7")))
    message = parse(
        oru_message(
            resources(bundle, "DiagnosticReport")[0],
            resources(bundle, "Patient")[0],
            resources(bundle, "Observation"),
        )
    )
    observations = resources(convert(message), "Observation")
    assert observations[0]["valueQuantity"]["value"] == 212
    assert observations[0]["valueQuantity"]["code"] == "mg/dL"
    assert observations[0]["code"]["coding"][0]["code"] == "2093-3"
    assert observations[2]["valueString"] == "Fasting & rested|ok"


class Receiver:
    """A minimal MLLP receiver answering with scripted MSA codes."""

    def __init__(self, codes: list[str]) -> None:
        self.codes = codes
        self.received: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\x1c\r"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.received.append(data)
                code = self.codes.pop(0) if self.codes else "AA"
                conn.sendall(
                    b"\x0bMSH|^~\\&|R|R|||20240101||ACK|1|P|2.5.1\rMSA|"
                    + code.encode()
                    + b"|X\r\x1c\r"
                )


@pytest.fixture
def sqlite_hub(sqlite_url: str, tmp_path: Any) -> Iterator[Hub]:
    from fhirhub.core.hub import build_hub
    from tests.conftest import make_settings

    hub = build_hub(make_settings(sqlite_url, tmp_path))
    yield hub
    hub.store.engine.dispose()


def test_retry_with_back_off_then_delivered(sqlite_hub: Hub) -> None:
    receiver = Receiver(["AE", "AE", "AA"])
    delays: list[float] = []
    payload = adt_message({"identifier": [{"value": "1"}]}, "A04")
    assert deliver(
        sqlite_hub, Destination("127.0.0.1", receiver.port), payload, sleep=delays.append
    )
    assert len(receiver.received) == 3
    assert delays == [0.5, 1.0]


def test_rejected_message_goes_to_the_outbound_dead_letters(sqlite_hub: Hub) -> None:
    from fhirhub.fhir_store.store import read_current

    receiver = Receiver(["AR"])
    payload = adt_message({"identifier": [{"value": "2"}]}, "A04")
    assert not deliver(
        sqlite_hub, Destination("127.0.0.1", receiver.port), payload, sleep=lambda _: None
    )
    assert len(receiver.received) == 1  # AR is final: no retry
    import hashlib

    key = "hl7out-" + hashlib.sha256(payload).hexdigest()[:40]
    with sqlite_hub.store.read() as conn:
        assert read_current(conn, "Task", key) is not None


def test_the_feed_sends_committed_patients_in_order_and_nothing_for_other_types(
    database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The outbound consumer end to end: REST writes -> the dispatcher -> a real MLLP peer."""
    import orjson
    from fastapi.testclient import TestClient

    from fhirhub.core.http.app import create_app
    from fhirhub.core.hub import build_hub
    from tests.conftest import make_settings

    receiver = Receiver([])
    monkeypatch.setenv("FHIRHUB_HL7_OUTBOUND", f"127.0.0.1:{receiver.port}")
    hub = build_hub(make_settings(database_url, tmp_path, listeners=False))
    headers = {"Content-Type": "application/fhir+json"}
    patient = {"resourceType": "Patient", "identifier": [{"value": "out-1"}], "gender": "female"}
    with TestClient(create_app(hub=hub)) as client:
        created = client.post("/fhir/Patient", content=orjson.dumps(patient), headers=headers)
        pid = created.json()["id"]
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "pulse"},
            "subject": {"reference": f"Patient/{pid}"},
        }
        client.post("/fhir/Observation", content=orjson.dumps(observation), headers=headers)
        updated = {**created.json(), "gender": "male"}
        client.put(f"/fhir/Patient/{pid}", content=orjson.dumps(updated), headers=headers)
        assert hub.dispatcher is not None and hub.dispatcher.wait_idle(timeout=30)
    hub.close()
    types = [parse(message.strip(b"\x0b\x1c\r")).message_type for message in receiver.received]
    assert types == ["ADT^A04", "ADT^A08"]
