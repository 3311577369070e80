"""Conversion in worker processes ahead of the writer: used when ready and applicable,
otherwise the writer converts, so every outcome is what it would be without the pool."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from fhirhub.adapters.hl7 import convert_pool
from fhirhub.adapters.hl7.convert import convert_message, message_key
from fhirhub.adapters.hl7.convert_pool import (
    Converted,
    ConvertPool,
    Prepared,
    configured_processes,
    prepare,
)
from fhirhub.adapters.hl7.mllp_server import MllpServer, frame
from fhirhub.adapters.hl7.parsing import parse
from fhirhub.adapters.hl7.processing import handle_many
from fhirhub.core.hub import Hub
from fhirhub.fhir_store.store import read_current
from tests.adapters.hl7.conftest import fixture
from tests.adapters.hl7.test_group_commit import adt, patients

STARTUP_SECONDS = 60


def started(processes: int = 1) -> ConvertPool:
    pool = ConvertPool(processes).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not pool.ready:
        assert time.monotonic() < deadline, "conversion workers did not start"
        time.sleep(0.05)
    return pool


@pytest.fixture(scope="module")
def pool() -> Iterator[ConvertPool]:
    workers = started()
    yield workers
    workers.stop()


def submitted(pool: ConvertPool, raw: bytes) -> Prepared:
    prepared = pool.submit(raw)
    assert prepared is not None and prepared.finished(STARTUP_SECONDS)
    return prepared


def stored(hub: Hub, raw: bytes, *, qualified: bool = False) -> bool:
    key = message_key(parse(raw), qualified=qualified)
    with hub.store.read() as conn:
        return read_current(conn, "Provenance", key) is not None


def test_a_finished_conversion_is_used(hub: Hub, pool: ConvertPool) -> None:
    raw = adt("POOL-1", "MRN-P1", family="Worker")
    before = pool.prepared
    [outcome] = handle_many(hub, [raw], prepared=[submitted(pool, raw)])
    assert outcome.code == "AA"
    assert pool.prepared == before + 1
    [patient] = patients(hub, "MRN-P1")
    assert patient["name"][0]["family"] == "Worker"
    assert stored(hub, raw)


def test_an_unfinished_conversion_is_cancelled_and_the_writer_converts(
    hub: Hub, pool: ConvertPool
) -> None:
    raw = adt("POOL-2", "MRN-P2")
    pending = Prepared(pool)  # no worker will ever answer it
    before = pool.prepared
    [outcome] = handle_many(hub, [raw], prepared=[pending])
    assert outcome.code == "AA" and stored(hub, raw)
    pending._arrived(Converted(b"{}", True))  # an answer arriving late is dropped
    assert pending.take() is None
    assert pool.prepared == before


def test_the_writer_does_not_repeat_the_workers_validation(
    hub: Hub, pool: ConvertPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fhirhub.core.interactions import bundle as transactions

    walked: list[int] = []
    original = transactions.validate_many

    def counting(resources: list[object]) -> list[object]:
        walked.append(len(resources))
        return original(resources)

    monkeypatch.setattr(transactions, "validate_many", counting)
    raw = adt("POOL-V1", "MRN-V1")
    prepared = submitted(pool, raw)
    assert prepared._result is not None and prepared._result.validated
    [outcome] = handle_many(hub, [raw], prepared=[prepared])
    assert outcome.code == "AA" and stored(hub, raw)
    assert walked == []  # the worker walked them
    [outcome] = handle_many(hub, [adt("POOL-V2", "MRN-V2")])  # converted by the writer
    assert outcome.code == "AA" and walked and walked[-1] > 0


def _with_invalid_gender(message: object, *, key: str | None = None) -> object:
    converted = convert_message(message, key=key)  # type: ignore[arg-type]
    for entry in converted.bundle["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["gender"] = 7  # not a code
    return converted


def test_a_bundle_with_an_invalid_resource_is_flagged_and_validated_by_the_writer(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = adt("POOL-V3", "MRN-V3")
    reply = prepare(raw)
    assert reply is not None and reply[:1] == b"V"
    import fhirhub.adapters.hl7.convert as converter

    monkeypatch.setattr(converter, "convert_message", _with_invalid_gender)
    reply = prepare(raw)
    assert reply is not None and reply[:1] == b"-"
    conversion = convert_pool._conversion(reply)
    assert conversion is not None and not conversion.validated
    prepared = Prepared(ConvertPool(0))
    prepared._arrived(conversion)
    [outcome] = handle_many(hub, [raw], prepared=[prepared])
    assert outcome.code == "AE"
    assert b"gender" in outcome.ack
    assert not stored(hub, raw) and patients(hub, "MRN-V3") == []


def test_a_reused_control_id_is_converted_by_the_writer_under_its_own_key(
    hub: Hub, pool: ConvertPool
) -> None:
    first = adt("POOL-3", "MRN-P3", family="First")
    second = adt("POOL-3", "MRN-P3", family="Second")  # same MSH-10, other content
    assert handle_many(hub, [first])[0].code == "AA"
    before = pool.prepared
    [outcome] = handle_many(hub, [second], prepared=[submitted(pool, second)])
    assert outcome.code == "AA" and not outcome.duplicate
    assert pool.prepared == before  # the worker's Bundle carried the unqualified key
    assert stored(hub, first) and stored(hub, second, qualified=True)
    assert patients(hub, "MRN-P3")[0]["name"][0]["family"] == "Second"


def test_a_message_the_worker_cannot_convert_gets_the_writers_precise_error(
    hub: Hub, pool: ConvertPool
) -> None:
    raw = fixture("adt_a01.hl7").replace(b"ADT^A01^ADT_A01", b"ADT^A29^ADT_A21")
    [outcome] = handle_many(hub, [raw], prepared=[submitted(pool, raw)])
    assert outcome.code == "AR"
    err = [s for s in outcome.ack.decode().split("\r") if s.startswith("ERR|")][0].split("|")
    assert err[2] == "MSH^1^9"
    assert err[3].startswith("200^")
    assert outcome.dead_letter is not None


def test_a_crashed_worker_leaves_conversion_to_the_writer(hub: Hub) -> None:
    workers = started()
    try:
        for process in workers._processes:
            assert process.pid is not None
            os.kill(process.pid, signal.SIGKILL)
        raws = [adt(f"POOL-CRASH-{i}", f"MRN-C{i}") for i in range(3)]
        deadline = time.monotonic() + STARTUP_SECONDS
        while workers.ready and time.monotonic() < deadline:
            prepared = workers.submit(raws[0])
            if prepared is not None:
                prepared.finished(1)
            time.sleep(0.05)
        assert not workers.ready
        assert workers.submit(raws[1]) is None
        outcomes = handle_many(hub, raws)
        assert [o.code for o in outcomes] == ["AA", "AA", "AA"]
    finally:
        workers.stop()


def test_mllp_with_workers_keeps_every_connection_in_order(hub: Hub) -> None:
    server = MllpServer(hub, "127.0.0.1", 0, convert_processes=1).start()
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while server.convert_pool is not None and not server.convert_pool.ready:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        acks: dict[int, list[bytes]] = {}

        def sender(connection: int) -> None:
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                received = acks.setdefault(connection, [])
                for i in range(10):
                    # every message updates the same patient of this connection: order matters
                    raw = adt(f"POOL-M{connection}-{i}", f"MRN-M{connection}", family=f"V{i}")
                    sock.sendall(frame(raw))
                    data = b""
                    while not data.endswith(b"\x1c\r"):
                        data += sock.recv(65536)
                    received.append(data)

        threads = [threading.Thread(target=sender, args=(c,)) for c in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for connection in range(4):
            assert [b"MSA|AA|POOL-M" in ack for ack in acks[connection]] == [True] * 10
            [patient] = patients(hub, f"MRN-M{connection}")
            assert patient["name"][0]["family"] == "V9"  # the last message won
    finally:
        server.stop()


def test_a_lone_connection_is_converted_by_the_writer_and_several_use_the_workers(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = MllpServer(hub, "127.0.0.1", 0, convert_processes=1).start()
    try:
        pool = server.convert_pool
        assert pool is not None
        deadline = time.monotonic() + STARTUP_SECONDS
        while not pool.ready:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        submitted: list[bytes] = []
        submit = pool.submit
        monkeypatch.setattr(pool, "submit", lambda raw: submitted.append(raw) or submit(raw))

        def send(sock: socket.socket, raw: bytes) -> bytes:
            sock.sendall(frame(raw))
            data = b""
            while not data.endswith(b"\x1c\r"):
                data += sock.recv(65536)
            return data

        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as first:
            assert b"MSA|AA" in send(first, adt("POOL-L1", "MRN-L1"))
            assert submitted == []  # one sender: no worker would finish before the writer
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as second:
                assert b"MSA|AA" in send(second, adt("POOL-L2", "MRN-L2"))
                assert b"MSA|AA" in send(first, adt("POOL-L3", "MRN-L3"))
        assert len(submitted) == 2  # two open connections: both messages went to the worker
    finally:
        server.stop()


def test_the_default_is_one_worker_where_there_is_a_second_core(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FHIRHUB_HL7_CONVERT_PROCESSES", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert configured_processes(None) == 1
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert configured_processes(None) == 0
    monkeypatch.setenv("FHIRHUB_HL7_CONVERT_PROCESSES", "3")
    assert configured_processes(None) == 3
    monkeypatch.setenv("FHIRHUB_HL7_CONVERT_PROCESSES", "off-by-typo")
    with pytest.raises(ValueError, match="convert_processes"):  # refused loudly, not guessed
        configured_processes(None)
