"""The integrity plugin: signing key, periodic head signing, ``$verify-chain`` and the
``fhirhub verify`` command, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from fhirhub.core.access import Access, acting_as
from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub, build_hub
from fhirhub.core.operations import OperationCall
from fhirhub.fhir_store.chain import key_id, verify_chain
from fhirhub.fhir_store.errors import FhirError
from fhirhub.fhir_store.schema import chain_signature, resource_version
from fhirhub.plugins.integrity import keys
from tests.conftest import make_settings


def write_patients(client: TestClient, count: int) -> list[str]:
    ids = []
    for n in range(count):
        response = client.post(
            "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": f"P{n}"}]}
        )
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def log_seqs(hub: Hub) -> list[int]:
    with hub.store.read() as conn:
        return list(conn.execute(select(resource_version.c.seq).order_by("seq")).scalars())


def verify_op(client: TestClient) -> dict[str, Any]:
    response = client.get("/fhir/$verify-chain")
    assert response.status_code == 200, response.text
    out: dict[str, Any] = {}
    for parameter in response.json()["parameter"]:
        if parameter["name"] == "problem":
            parts = {
                p["name"]: next(v for k, v in p.items() if k.startswith("value"))
                for p in parameter["part"]
            }
            out.setdefault("problems", []).append(parts)
        else:
            out[parameter["name"]] = next(v for k, v in parameter.items() if k.startswith("value"))
    return out


def test_verify_chain_operation_names_altered_deleted_and_forged(
    client: TestClient, hub: Hub
) -> None:
    ids = write_patients(client, 4)
    signed = client.post("/fhir/$sign-chain-head", json={"resourceType": "Parameters"})
    assert signed.status_code == 200 and signed.json()["parameter"][0]["valueBoolean"] is True
    result = verify_op(client)
    assert result["intact"] is True and result["entries"] >= 4 and result["signatures"] == 1
    assert "problems" not in result

    seqs = log_seqs(hub)
    with hub.store.engine.begin() as conn:  # alter one row's content behind the hub's back
        conn.execute(
            update(resource_version)
            .where(resource_version.c.seq == seqs[1])
            .values(content=b'{"resourceType":"Patient","id":"evil"}')
        )
    result = verify_op(client)
    assert result["intact"] is False
    first = result["problems"][0]
    assert (first["kind"], first["seq"]) == ("altered", seqs[1])
    assert first["reference"] == f"Patient/{ids[1]}/_history/1"

    with hub.store.engine.begin() as conn:  # now also delete the row after it
        conn.execute(delete(resource_version).where(resource_version.c.seq == seqs[2]))
    problems = [p for p in verify_op(client)["problems"] if "seq" in p]  # the chain's
    assert [(p["kind"], p["seq"]) for p in problems] == [
        ("altered", seqs[1]),
        ("deleted", seqs[3]),
    ]

    with hub.store.engine.begin() as conn:  # and forge the signature
        conn.execute(update(chain_signature).values(signature=bytes(64)))
    problems = [p for p in verify_op(client)["problems"] if "seq" in p]
    assert problems[-1]["kind"] == "signature-invalid" and problems[-1]["seq"] == seqs[-1]


def test_verify_chain_is_for_admins_only(hub: Hub) -> None:
    operation = hub.operations.find("verify-chain", "system", None)
    call = OperationCall(hub, None, None, {}, None, "http://testserver/fhir")
    clinician = Access(subject="user:doc", tenant="org1", roles=frozenset({"clinician"}))
    with acting_as(clinician), pytest.raises(FhirError) as refused:
        operation.handler(call)
    assert refused.value.status == 403
    admin = Access(subject="user:root", roles=frozenset({"super_admin"}), scopes=())
    with acting_as(admin):
        result = operation.handler(call)
    assert isinstance(result, dict) and result["parameter"][0] == {
        "name": "intact",
        "valueBoolean": True,
    }


def test_the_head_is_signed_periodically_and_at_shutdown(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        database_url, tmp_path, plugin_config={"integrity": {"chain_sign_interval": 0.05}}
    )
    hub = build_hub(settings)
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        write_patients(client, 2)
        deadline = time.monotonic() + 10
        while verify_chain(hub.store.engine, keys.trusted_keys(settings)).last_signed_seq != max(
            log_seqs(hub)
        ):
            assert time.monotonic() < deadline, "the head was not signed in time"
            time.sleep(0.05)
        write_patients(client, 1)
    # Shutdown signed what was written last, whatever the timer had done.
    report = verify_chain(hub.store.engine, keys.trusted_keys(settings))
    assert report.intact and report.last_signed_seq == max(log_seqs(hub))
    assert report.unsigned_entries == 0
    hub.store.engine.dispose()


def test_the_signing_key_is_generated_once_private_and_trusted(tmp_path: Path) -> None:
    settings = make_settings("sqlite://", tmp_path)
    key = keys.load_signing_key(settings)
    assert key is not None
    path = tmp_path / "keys" / keys.DEFAULT_KEY_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    again = keys.load_signing_key(settings)
    assert again is not None and bytes(again) == bytes(key)
    assert set(keys.trusted_keys(settings)) == {key_id(key.verify_key)}

    # A rotated key: the old public key, kept as a .pub file, still verifies old heads.
    old_public = path.with_suffix(".pub").read_text()
    (path.parent / "2026-old.pub").write_text(old_public)
    path.unlink()
    rotated = keys.load_signing_key(settings)
    assert rotated is not None and bytes(rotated) != bytes(key)
    assert set(keys.trusted_keys(settings)) == {
        key_id(key.verify_key),
        key_id(rotated.verify_key),
    }
    assert (
        keys.load_signing_key(make_settings("sqlite://", tmp_path / "none"), create=False) is None
    )


def test_a_key_file_can_be_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    given = tmp_path / "elsewhere" / "hub.key"
    monkeypatch.setenv("FHIRHUB_SIGNING_KEY_FILE", str(given))
    settings = make_settings("sqlite://", tmp_path / "data")
    key = keys.load_signing_key(settings)
    assert key is not None and given.exists()
    assert not (tmp_path / "data" / "keys").exists()


# -- the real command line ---------------------------------------------------------------------


def fhirhub(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fhirhub.core.cli", *args],
        capture_output=True,
        text=True,
        cwd=data_dir,
        timeout=300,
        env={**os.environ, "FHIRHUB_DATA_DIR": str(data_dir)},
    )


@pytest.mark.slow
def test_fhirhub_verify_detects_a_tampered_row(database_url: str, tmp_path: Path) -> None:
    hub = build_hub(make_settings(database_url, tmp_path))
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        ids = write_patients(client, 3)
    seqs = log_seqs(hub)

    signed = fhirhub("sign-head", "--db", database_url, data_dir=tmp_path)
    assert signed.returncode == 0, signed.stderr
    replayed = fhirhub("replay", "--db", database_url, data_dir=tmp_path)
    assert replayed.returncode == 0, replayed.stderr
    intact = fhirhub("verify", "--db", database_url, data_dir=tmp_path)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "intact" in intact.stdout

    with hub.store.engine.begin() as conn:
        conn.execute(
            update(resource_version)
            .where(resource_version.c.seq == seqs[1])
            .values(content=b'{"resourceType":"Patient","id":"x","gender":"other"}')
        )
    hub.store.engine.dispose()
    tampered = fhirhub("verify", "--db", database_url, data_dir=tmp_path)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert (
        f"First bad entry: altered at seq {seqs[1]} (Patient/{ids[1]}/_history/1)"
        in tampered.stdout
    )
