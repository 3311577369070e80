"""One authenticated request must not exhaust the server: search bounds, Bundle limits with a
measured memory ceiling, and request heads that never finish.

Searches and Bundles run against the two-tenant world over real HTTP on both backends; the
memory ceiling and the request-head deadline against ``fhirhub serve`` in its own process, whose
resident memory is read from ``/proc``.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.security.rest_world import RestWorld, rest_world


@pytest.fixture
def world(database_url: str, tmp_path: Path) -> Iterator[RestWorld]:
    with rest_world(database_url, tmp_path) as built:
        yield built


def too_costly(response: httpx.Response) -> str:
    assert response.status_code == 400, response.text
    issue = response.json()["issue"][0]
    assert issue["code"] == "too-costly"
    return str(issue["diagnostics"])


def test_search_bounds_answer_400_too_costly(world: RestWorld) -> None:
    a = world.caller("clin-a")
    codes = ",".join(f"c{i}" for i in range(500))
    assert "more than 100" in too_costly(a.get(f"Observation?code={codes}"))
    ids = ",".join(f"id{i}" for i in range(101))
    assert "more than 100" in too_costly(a.get(f"Observation?_id={ids}"))
    keys = ",".join(["code", "-date", "value-quantity"] * 133)
    assert "at most 5 keys" in too_costly(a.get(f"Observation?_sort={keys}"))
    for offset in ("99999999999999999999", "9223372036854775808", "100001"):
        assert "_offset" in too_costly(a.get(f"Observation?_sort=date&_offset={offset}"))
    # A chain fans out to every type its reference can point at: Observation.focus can point
    # at any of 146 types, so ten values are well over a thousand SQL terms.
    fan_out = ",".join(f"x{i}" for i in range(10))
    assert "too complex" in too_costly(a.get(f"Observation?focus._id={fan_out}"))
    many_and = "&".join(f"code:not=c{i}" for i in range(1001))
    assert "too complex" in too_costly(a.get(f"Observation?{many_and}"))
    everything = a.get("Patient/pa1/$everything?_offset=99999999999999999999")
    assert "_offset" in too_costly(everything)


def test_searches_within_the_bounds_still_work(world: RestWorld) -> None:
    a = world.caller("clin-a")
    codes = ",".join(["8867-4"] + [f"c{i}" for i in range(99)])
    assert a.get(f"Observation?code={codes}").json()["total"] == 2
    sorted_page = a.get("Observation?_sort=-date,code,_id,-_lastUpdated,value-quantity")
    assert sorted_page.status_code == 200 and sorted_page.json()["total"] == 2
    assert a.get("Observation?_sort=date&_offset=100000").json()["total"] == 2


def transaction(entries: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def new_patient(identifiers: int = 0, index: int = 0) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "Patient", "gender": "female"}
    if identifiers:
        resource["identifier"] = [
            {"system": "http://x", "value": f"p{index}-{j}"} for j in range(identifiers)
        ]
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": resource,
        "request": {"method": "POST", "url": "Patient"},
    }


def test_bundles_over_the_entry_limit_are_refused_before_any_work(world: RestWorld) -> None:
    a = world.caller("clin-a")
    limit = world.hub.settings.max_bundle_entries = 40
    headers = {"Content-Type": "application/fhir+json"}
    for kind in ("transaction", "batch"):
        body = orjson.loads(transaction([new_patient() for _ in range(limit + 1)]))
        body["type"] = kind
        response = a.post("", content=orjson.dumps(body), headers=headers)
        assert response.status_code == 413, response.text
        issue = response.json()["issue"][0]
        assert issue["code"] == "too-costly" and str(limit) in issue["diagnostics"]
    assert a.get("Patient?_summary=count").json()["total"] == 2  # nothing was stored


def rss_mib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) // 1024
    raise AssertionError(f"no {field} for process {pid}")


#: Resident memory a transaction at the limits may add to the server, per byte of the body
#: limit. Measured: a 7.9 MB transaction of 2,500 Patients with 78 identifiers each (the worst
#: shape found: every identifier is an index row) raised the peak by about 155 MiB (about 20
#: times the body); before the Bundle limits it was 238 MiB, and a 25.7 MB transaction of
#: small entries took 1.7 GB.
MEMORY_PER_BODY_BYTE = 24


def test_a_transaction_at_the_limits_stays_under_the_memory_ceiling(
    sqlite_url: str, tmp_path: Path
) -> None:
    body_limit = 8 * 1024 * 1024
    entry_limit = 2500
    server = LiveServer(
        sqlite_url,
        tmp_path,
        env={
            "FHIRHUB_MAX_BODY_BYTES": str(body_limit),
            "FHIRHUB_MAX_BUNDLE_ENTRIES": str(entry_limit),
            "FHIRHUB_HL7_PORT": "off",
            "FHIRHUB_DICOM_PORT": "off",
        },
    ).start()
    headers = {"Content-Type": "application/fhir+json"}
    try:
        assert server.process is not None
        pid = server.process.pid
        with httpx.Client(base_url=server.fhir, timeout=300) as client:
            # Warm up (imports, caches, the database's pages) with a small transaction.
            warm = transaction([new_patient(1, i) for i in range(300)])
            assert client.post("", content=warm, headers=headers).status_code == 200
            # Many small entries: refused by count, whatever their size.
            swarm = transaction([new_patient() for _ in range(25_000)])
            refused = client.post("", content=swarm, headers=headers)
            assert refused.status_code == 413, refused.text
            # At the limits: as many entries as allowed, as many bytes as allowed.
            entries = [new_patient(78, i) for i in range(entry_limit)]
            body = transaction(entries)
            assert 0.9 * body_limit < len(body) <= body_limit
            before = rss_mib(pid, "VmRSS")
            started = time.monotonic()
            stored = client.post("", content=body, headers=headers)
            elapsed = time.monotonic() - started
            assert stored.status_code == 200, stored.text[:500]
            growth = rss_mib(pid, "VmHWM") - before
            ceiling = MEMORY_PER_BODY_BYTE * body_limit // (1024 * 1024)
            assert growth < ceiling, f"peak grew {growth} MiB (ceiling {ceiling} MiB)"
            assert elapsed < 120
            total = client.get("Patient?_summary=count").json()["total"]
            assert total == 300 + entry_limit
    finally:
        server.stop()


def read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """What the server sends until it closes the connection, and when it closed (seconds)."""
    started = time.monotonic()
    received = b""
    sock.settimeout(limit)
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return received, time.monotonic() - started


def test_request_heads_that_never_finish_are_cut_off(sqlite_url: str, tmp_path: Path) -> None:
    server = LiveServer(
        sqlite_url,
        tmp_path,
        env={
            "FHIRHUB_HTTP_HEADER_TIMEOUT": "1",
            "FHIRHUB_HL7_PORT": "off",
            "FHIRHUB_DICOM_PORT": "off",
        },
    ).start()
    try:
        # Headers begun and never finished.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /fhir/metadata HTTP/1.1\r\nHost: hub\r\nAccept: appl")
            received, closed_after = read_until_closed(sock, 10)
        assert received.startswith(b"HTTP/1.1 408"), received
        assert closed_after < 5
        # A header line every 0.3 s: the deadline covers the whole head, not each read.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n")
            sock.settimeout(0.3)
            started, received = time.monotonic(), b""
            while time.monotonic() - started < 10:
                try:
                    sock.sendall(b"X-Slow: 1\r\n")
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    break
                if not chunk:
                    break
                received += chunk
            assert time.monotonic() - started < 5
        assert b"200 OK" not in received
        # A connection opened and left silent is closed too.
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            _, closed_after = read_until_closed(sock, 10)
        assert closed_after < 5
        # Whole requests are unaffected, on a kept-alive connection too.
        with httpx.Client(base_url=server.base) as client:
            for _ in range(2):
                assert client.get("/healthz").status_code == 200
                time.sleep(1.5)
    finally:
        server.stop()
