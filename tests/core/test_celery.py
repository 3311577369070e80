"""Background work on real Celery workers, with Redis and with RabbitMQ as the broker.

A real ``celery worker`` process shares the hub's database; each test uses its own queue
(and Redis database number) so runs do not interfere.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.settings import Settings
from fhirhub.fhir_store.schema import dispatch_cursor, resource_version
from fhirhub.sdk import read
from tests.core.fhir_samples import patient

pytestmark = pytest.mark.slow

BROKERS = {
    "redis": "redis://127.0.0.1:6379/11",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672//",
}


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> str:
    return BROKERS[request.param]


@pytest.fixture
def worker(broker: str, sqlite_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    queue = f"fhirhub-test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "FHIRHUB_DB": sqlite_url,
        "FHIRHUB_BROKER": broker,
        "FHIRHUB_BROKER_QUEUE": queue,
        "FHIRHUB_DATA_DIR": str(tmp_path),
        "FHIRHUB_HL7_PORT": "off",
        "FHIRHUB_DICOM_PORT": "off",
        "FHIRHUB_PLUGINS": "-mpi,+hello",  # the example plugin's task and consumer
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "fhirhub.core.celery_app",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "-n",  # a node name per test: parallel workers must not share a pidbox queue
            f"{queue}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while b"ready" not in (tmp_path / "worker.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp_path / "worker.log").read_text())
        time.sleep(0.2)
    yield queue, str(tmp_path / "worker.log")
    process.terminate()
    process.wait(timeout=30)
    log.close()


def broker_hub(broker: str, queue: str, sqlite_url: str, tmp_path: Path) -> Hub:
    """A hub sharing the worker's database and queue."""
    return build_hub(
        Settings(
            db=sqlite_url,
            data_dir=tmp_path,
            broker=broker,
            broker_queue=queue,
            listeners=False,
            plugins="-mpi,+hello",
        )
    )


def test_task_runs_on_a_worker_and_writes_fhir(
    broker: str, worker: tuple[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    queue, log = worker
    hub = broker_hub(broker, queue, sqlite_url, tmp_path)
    assert hub.tasks is not None
    basic_id = hub.tasks.submit("hello.note", "from celery").result(timeout=60)
    assert read(hub, "Basic", basic_id)["code"]["text"] == "hello: from celery"
    assert "fhirhub.run_task" in Path(log).read_text()
    hub.close()


def test_resource_committed_is_delivered_by_workers(
    broker: str, worker: tuple[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    queue, log = worker
    hub = broker_hub(broker, queue, sqlite_url, tmp_path)
    with TestClient(create_app(hub=hub)) as client:
        for index in range(3):
            response = client.post("/fhir/Patient", content=orjson.dumps(patient(mrn=str(index))))
            assert response.status_code == 201
        assert hub.dispatcher.wait_idle(timeout=90)
    with hub.store.read() as conn:
        head = conn.execute(
            select(resource_version.c.seq).order_by(resource_version.c.seq.desc())
        ).first()
        cursor = conn.execute(
            select(dispatch_cursor.c.last_seq).where(dispatch_cursor.c.consumer == "hello")
        ).scalar_one()
    assert head is not None and cursor == head[0]
    assert Path(log).read_text().count("fhirhub.deliver") >= 3
    hub.close()


def test_search_parameter_is_indexed_by_a_worker(
    broker: str, worker: tuple[str, str], sqlite_url: str, tmp_path: Path
) -> None:
    queue, log = worker
    hub = broker_hub(broker, queue, sqlite_url, tmp_path)
    parameter = {
        "resourceType": "SearchParameter",
        "url": "http://hospital.example/SearchParameter/marital-text",
        "name": "marital-text",
        "status": "active",
        "description": "Marital status text",
        "code": "marital-text",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.maritalStatus.text",
    }
    with TestClient(create_app(hub=hub)) as client:
        married = patient(mrn="before", maritalStatus={"text": "Married"})
        assert client.post("/fhir/Patient", content=orjson.dumps(married)).status_code == 201
        response = client.post("/fhir/SearchParameter", content=orjson.dumps(parameter))
        assert response.status_code == 201, response.text
        assert hub.dispatcher.wait_idle(timeout=90)
        after = patient(mrn="after", maritalStatus={"text": "Married"})
        assert client.post("/fhir/Patient", content=orjson.dumps(after)).status_code == 201
        found = client.get(
            "/fhir/Patient", params={"marital-text": "marr"}, headers={"Prefer": "handling=strict"}
        )
        assert found.status_code == 200, found.text
        mrns = sorted(e["resource"]["identifier"][0]["value"] for e in found.json()["entry"])
    # "before" was indexed by the worker's re-indexing job, "after" by the API process as it was
    # written (the commit listener registered the parameter there too).
    assert mrns == ["after", "before"]
    assert "SearchParameter marital-text active" in Path(log).read_text()
    hub.close()
