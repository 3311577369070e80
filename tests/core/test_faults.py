"""Faults over real HTTP: a server killed mid-transaction, concurrent conditional updates."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import LiveServer
from tests.core.fhir_samples import patient

pytestmark = pytest.mark.slow
FHIR = {"Content-Type": "application/fhir+json"}


def big_transaction(size: int) -> bytes:
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-0000-0000-{i:012d}",
            "resource": patient(mrn=f"bulk-{i}", family=f"Bulk{i}"),
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(size)
    ]
    return orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})


def patient_count(base: str) -> int:
    return int(
        httpx.get(f"{base}/Patient", params={"_summary": "count"}, timeout=30).json()["total"]
    )


def test_killing_the_server_mid_transaction_commits_nothing_partial(
    database_url: str, tmp_path: Path
) -> None:
    server = LiveServer(database_url, tmp_path).start()
    committed = httpx.post(
        f"{server.fhir}/Patient", content=orjson.dumps(patient(mrn="before")), headers=FHIR
    )
    assert committed.status_code == 201
    size = 4000
    payload = big_transaction(size)

    def send() -> None:
        try:
            httpx.post(server.fhir, content=payload, headers=FHIR, timeout=120)
        except httpx.HTTPError:
            pass  # the server dies under us: that is the point

    sender = threading.Thread(target=send)
    sender.start()
    time.sleep(1.0)  # well inside the processing of a 4,000-entry transaction
    server.kill()
    sender.join()
    server.stop()

    restarted = LiveServer(database_url, tmp_path).start()
    try:
        count = patient_count(restarted.fhir)
        assert count in (1, 1 + size), f"partial transaction visible: {count} patients"
        survivor = httpx.get(f"{restarted.fhir}/Patient/{committed.json()['id']}")
        assert survivor.status_code == 200
        history = httpx.get(f"{restarted.fhir}/_history", params={"_summary": "count"}).json()
        assert history["total"] == count
    finally:
        restarted.stop()


def test_concurrent_if_match_updates_exactly_one_wins(live_server: LiveServer) -> None:
    created = httpx.post(
        f"{live_server.fhir}/Patient", content=orjson.dumps(patient()), headers=FHIR
    ).json()
    pid = created["id"]

    def attempt(index: int) -> int:
        body = orjson.dumps({**created, "name": [{"family": f"Writer{index}"}]})
        response = httpx.put(
            f"{live_server.fhir}/Patient/{pid}",
            content=body,
            headers={**FHIR, "If-Match": 'W/"1"'},
            timeout=60,
        )
        return response.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(attempt, range(16)))
    assert statuses.count(200) == 1, statuses
    assert all(s in (409, 412) for s in statuses if s != 200), statuses
    final = httpx.get(f"{live_server.fhir}/Patient/{pid}").json()
    assert final["meta"]["versionId"] == "2"


def test_a_50_mb_body_is_refused_and_nothing_is_lost(live_server: LiveServer) -> None:
    kept = httpx.post(f"{live_server.fhir}/Patient", content=orjson.dumps(patient()), headers=FHIR)
    huge = {
        **patient(),
        "text": {"status": "generated", "div": "<div>" + "x" * 50_000_000 + "</div>"},
    }
    response = httpx.post(
        f"{live_server.fhir}/Patient", content=orjson.dumps(huge), headers=FHIR, timeout=120
    )
    assert response.status_code == 413
    assert response.json()["issue"][0]["code"] == "too-costly"
    assert httpx.get(f"{live_server.fhir}/Patient/{kept.json()['id']}").status_code == 200
    assert patient_count(live_server.fhir) == 1
