"""Group commit against a real store (SQLite and PostgreSQL) and over real MLLP sockets: one
transaction per group, a savepoint per message, ACKs only after the commit."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhirhub.adapters.hl7.convert import message_key
from fhirhub.adapters.hl7.dead_letters import list_dead_letters
from fhirhub.adapters.hl7.mllp_server import MllpServer, frame
from fhirhub.adapters.hl7.parsing import parse
from fhirhub.adapters.hl7.processing import handle_many
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.interactions.search import search_bundle
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.store import read_current
from tests.adapters.hl7.conftest import fixture
from tests.conftest import make_settings

SYSTEM = "urn:oid:1.2.3.4"


def adt(control: str, mrn: str, family: str = "Doe") -> bytes:
    return (
        fixture("adt_a01.hl7")
        .replace(b"CTRL-A01-1", control.encode())
        .replace(b"MRN123", mrn.encode())
        .replace(b"Doe^Jane", f"{family}^Jane".encode())
    )


def oru(control: str, mrn: str) -> bytes:
    return (
        fixture("oru_r01.hl7")
        .replace(b"CTRL-ORU-1", control.encode())
        .replace(b"MRN123", mrn.encode())
    )


def search(hub: Hub, resource_type: str, **params: str) -> list[dict[str, Any]]:
    with hub.store.read() as conn:
        bundle = search_bundle(hub, conn, resource_type, list(params.items()), base_url="")
    return [entry["resource"] for entry in orjson.loads(bundle).get("entry", [])]


def patients(hub: Hub, mrn: str) -> list[dict[str, Any]]:
    return search(hub, "Patient", identifier=f"{SYSTEM}|{mrn}")


def processed(hub: Hub, raw: bytes) -> bool:
    with hub.store.read() as conn:
        return read_current(conn, "Provenance", message_key(parse(raw))) is not None


class RefuseFamily:
    """A policy plugin vetoing some Patients: a store-side failure in the middle of a group."""

    @hookimpl
    def resource_before_write(self, resource: dict[str, Any], context: Any) -> None:
        names = resource.get("name", []) if resource.get("resourceType") == "Patient" else []
        if any(name.get("family") == "Refuse" for name in names):
            raise FhirError(422, "Patients named Refuse are not accepted", code="business-rule")


@pytest.fixture
def policed_hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = build_hub(make_settings(database_url, tmp_path), extra_plugins=[RefuseFamily()])
    yield hub
    hub.store.engine.dispose()


def test_a_refused_message_in_the_middle_rolls_back_alone(policed_hub: Hub) -> None:
    hub = policed_hub
    good, bad, after = adt("G-1", "MRN1"), adt("G-2", "MRN2", "Refuse"), adt("G-3", "MRN3")
    outcomes = handle_many(hub, [good, bad, after])
    assert [o.code for o in outcomes] == ["AA", "AE", "AA"], [o.error for o in outcomes]
    assert b"MSA|AE|G-2" in outcomes[1].ack and b"ERR|" in outcomes[1].ack
    assert b"Patients named Refuse" in outcomes[1].ack
    assert len(patients(hub, "MRN1")) == 1 and len(patients(hub, "MRN3")) == 1
    assert patients(hub, "MRN2") == []  # nothing of the refused message was kept ...
    assert not processed(hub, bad) and processed(hub, good) and processed(hub, after)
    assert [t["id"] for t in list_dead_letters(hub)] == [outcomes[1].dead_letter]  # ... but it


def test_an_ambiguous_patient_is_answered_ae_while_neighbours_commit(hub: Hub) -> None:
    with hub.store.unit_of_work() as uow:  # two Patients with one MRN, as a REST client could
        for twin in ("twin-1", "twin-2"):
            identifier = [{"system": SYSTEM, "value": "MRN-D"}]
            uow.put("Patient", twin, {"resourceType": "Patient", "identifier": identifier})
    outcomes = handle_many(hub, [adt("R-1", "MRN-X"), adt("R-2", "MRN-D"), adt("R-3", "MRN-Y")])
    assert [o.code for o in outcomes] == ["AA", "AE", "AA"]
    assert b"matches 2 resources" in outcomes[1].ack
    assert [t["id"] for t in list_dead_letters(hub)] == [outcomes[1].dead_letter]
    assert len(patients(hub, "MRN-X")) == len(patients(hub, "MRN-Y")) == 1


def test_the_same_message_twice_in_one_group_is_processed_once(hub: Hub) -> None:
    raw = adt("TWICE-1", "MRN7")
    first, second = handle_many(hub, [raw, raw])
    assert first.code == second.code == "AA"
    assert not first.duplicate and second.duplicate
    with hub.store.read() as conn:
        provenance = read_current(conn, "Provenance", message_key(parse(raw)))
    assert provenance is not None and provenance.version_id == 1
    [patient] = patients(hub, "MRN7")
    assert patient["meta"]["versionId"] == "1"


def test_a_patient_is_shared_by_the_messages_of_one_group(hub: Hub) -> None:
    outcomes = handle_many(
        hub,
        [adt("S-1", "MRN8"), oru("S-2", "MRN8"), adt("S-3", "MRN8", "Smith"), oru("S-4", "MRN9")],
    )
    assert [o.code for o in outcomes] == ["AA"] * 4
    [patient] = patients(hub, "MRN8")
    assert patient["meta"]["versionId"] == "2"  # created, then updated by S-3
    assert patient["name"][0]["family"] == "Smith"
    subjects = {o["subject"]["reference"] for o in search(hub, "Observation")}
    [other] = patients(hub, "MRN9")  # the ORU for an unknown patient created it
    assert subjects == {f"Patient/{patient['id']}", f"Patient/{other['id']}"}


def read_frame(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\x1c\r"):
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an ACK arrived"
        data += chunk
    return data


def test_concurrent_connections_with_interleaved_patients(hub: Hub) -> None:
    connections, per_connection, mrns = 8, 6, ["MRN-A", "MRN-B", "MRN-C"]
    server = MllpServer(hub, "127.0.0.1", 0).start()
    answers: dict[int, list[bytes]] = {}
    try:

        def sender(number: int) -> None:
            with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                acks = []
                for i in range(per_connection):
                    mrn = mrns[(number + i) % len(mrns)]
                    make = adt if i % 2 == 0 else oru
                    sock.sendall(frame(make(f"C{number}-{i}", mrn)))
                    acks.append(read_frame(sock))
                answers[number] = acks

        threads = [threading.Thread(target=sender, args=(n,)) for n in range(connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
    assert len(answers) == connections
    for number, acks in answers.items():  # every message accepted, answered in order
        assert [a.split(b"MSA|")[1].split(b"|")[:2] for a in acks] == [
            [b"AA" if i % 2 == 0 else b"CA", f"C{number}-{i}".encode()]
            for i in range(per_connection)
        ]
    for mrn in mrns:  # concurrent messages about one patient never duplicate it
        assert len(patients(hub, mrn)) == 1
    committer = server.committer
    assert committer is not None
    assert committer.messages == connections * per_connection
    assert committer.groups < committer.messages  # messages did share commits


def test_a_large_fhs_batch_is_committed_in_bounded_groups(hub: Hub) -> None:
    from fhirhub.adapters.hl7.group_commit import MAX_GROUP
    from fhirhub.adapters.hl7.processing import process_batch

    count = MAX_GROUP + 3
    body = b"FHS|^~\\&\rBHS|^~\\&\r"
    body += b"".join(
        adt(f"B-{i}", "MRN-B", family=f"Doe{i}").replace(b"\n", b"\r") for i in range(count)
    )
    body += b"BTS|%d\rFTS|1\r" % count
    outcomes = process_batch(hub, body)
    assert [o.code for o in outcomes] == ["AA"] * count
    [patient] = patients(hub, "MRN-B")  # one patient, updated by each message in order
    assert patient["meta"]["versionId"] == str(count)


def test_the_writer_lingers_for_the_other_open_connections(hub: Hub) -> None:
    """Senders answered by one commit send again a moment later: the writer waits (briefly)
    for them, so they share the next commit instead of splitting into alternating cohorts."""
    import time

    from fhirhub.adapters.hl7.group_commit import GroupCommitter

    committer = GroupCommitter(hub, senders=lambda: 3, linger=0.5).start()
    try:
        first = committer.submit(adt("L-1", "MRN-L1"))
        time.sleep(0.05)
        others = [committer.submit(adt(f"L-{i}", f"MRN-L{i}")) for i in (2, 3)]
        assert [f.result(30).code for f in [first, *others]] == ["AA"] * 3
        assert (committer.groups, committer.largest_group) == (1, 3)
        # A sender that stays quiet delays a group by at most the linger.
        committer.linger = 0.05
        started = time.monotonic()
        assert committer.submit(adt("L-4", "MRN-L4")).result(30).code == "AA"
        assert committer.groups == 2
        assert time.monotonic() - started < 5
    finally:
        committer.stop()


def test_a_lone_refused_message_keeps_nothing_but_its_dead_letter(policed_hub: Hub) -> None:
    # A lone message (one connection's feed) has no savepoint: its failure rolls back the whole
    # transaction, and its dead letter is stored in a second one.
    hub = policed_hub
    bad = adt("L-1", "MRN-L", "Refuse")
    [outcome] = handle_many(hub, [bad])
    assert outcome.code == "AE" and b"Patients named Refuse" in outcome.ack
    assert patients(hub, "MRN-L") == [] and not processed(hub, bad)
    assert search(hub, "Encounter") == []
    assert [t["id"] for t in list_dead_letters(hub)] == [outcome.dead_letter]


class FailCommitOnce:
    """Refuses the first unit of work that wrote a Provenance: a failure at commit time, after
    every entry of the message was written."""

    def __init__(self) -> None:
        self.failed = False

    @hookimpl
    def before_commit(self, transaction: Any) -> None:
        written = {version.resource_type for version in transaction.written}
        if not self.failed and "Provenance" in written and "Patient" in written:
            self.failed = True
            raise FhirError(500, "the disk is full", code="exception")


def test_a_lone_message_failing_at_commit_is_answered_ae_and_stores_nothing(
    database_url: str, tmp_path: Path
) -> None:
    hub = build_hub(make_settings(database_url, tmp_path), extra_plugins=[FailCommitOnce()])
    try:
        raw = adt("L-2", "MRN-C")
        [outcome] = handle_many(hub, [raw])
        assert outcome.code == "AE" and b"MSA|AE|L-2" in outcome.ack, outcome.ack
        assert patients(hub, "MRN-C") == [] and not processed(hub, raw)
        assert [t["id"] for t in list_dead_letters(hub)] == [outcome.dead_letter]
        [again] = handle_many(hub, [raw])  # the sender's retry is processed, not a duplicate
        assert again.code == "AA" and not again.duplicate
        assert len(patients(hub, "MRN-C")) == 1
    finally:
        hub.store.engine.dispose()
