"""Finding 16: signed heads anchored outside the database, and the age of the unsigned tail.

The attack: delete the newest ``chain_signature`` rows, rewrite log rows after the last
remaining signature and recompute every later hash. The database alone then verifies; the
anchor file (and a witness) still hold the deleted heads, so ``verify`` and ``replay`` refuse.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select, update

from fhirhub.core.http.app import create_app
from fhirhub.core.hub import Hub, build_hub
from fhirhub.fhir_store.chain import (
    HASH_SIZE,
    chain_link,
    entry_digest,
    verify_chain,
)
from fhirhub.fhir_store.replay import TamperedLog, replay
from fhirhub.fhir_store.schema import chain_signature, resource_current, resource_version
from fhirhub.plugins.integrity import keys, trust
from fhirhub.plugins.integrity.anchor import AnchorFile
from tests.conftest import make_settings
from tests.plugins.integrity.test_integrity import fhirhub, log_seqs, write_patients

rv = resource_version


def sign(client: TestClient) -> int:
    response = client.post("/fhir/$sign-chain-head", json={"resourceType": "Parameters"})
    assert response.status_code == 200, response.text
    values = {
        p["name"]: next(v for k, v in p.items() if k.startswith("value"))
        for p in response.json()["parameter"]
    }
    assert values["signed"] is True
    return int(values["seq"])


def rewrite_after(hub: Hub, seq: int, family: str) -> None:
    """Forge every Patient version after ``seq`` and recompute all later digests and links,
    as an attacker with database access but without the signing key would."""
    with hub.store.engine.begin() as conn:
        before = conn.execute(select(rv.c.hash).where(rv.c.seq == seq)).scalar_one()
        link = bytes(before[HASH_SIZE:])
        rows = conn.execute(select(rv).where(rv.c.seq > seq).order_by(rv.c.seq)).all()
        for row in rows:
            content = row.content
            if row.resource_type == "Patient" and content is not None:
                resource = json.loads(content)
                resource["name"] = [{"family": family}]
                content = json.dumps(resource).encode()
            digest = entry_digest(
                row.resource_type,
                row.resource_id,
                row.version_id,
                row.last_updated,
                row.method,
                row.deleted,
                row.tenant,
                content,
            )
            link = chain_link(link, digest)
            conn.execute(
                update(rv).where(rv.c.seq == row.seq).values(content=content, hash=digest + link)
            )
            conn.execute(
                update(resource_current)
                .where(resource_current.c.seq == row.seq)
                .values(content=content)
            )


def kinds(report: Any) -> set[str]:
    return {problem.kind for problem in report.problems}


def test_deleted_signatures_and_a_recomputed_tail_are_caught_by_the_anchor(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, listeners=False)
    hub = build_hub(settings)
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        write_patients(client, 3)
        first = sign(client)
        write_patients(client, 3)
        second = sign(client)
        write_patients(client, 2)
        third = sign(client)
    anchored = AnchorFile(tmp_path / "chain-anchor.ndjson").read()
    assert [head.seq for head in anchored][-3:] == [first, second, third]
    assert verify_chain(hub.store.engine, trust=trust(hub)).intact

    with hub.store.engine.begin() as conn:  # the attack
        conn.execute(delete(chain_signature).where(chain_signature.c.seq > first))
    rewrite_after(hub, first, "Forged")

    keys_only = verify_chain(hub.store.engine, keys.trusted_keys(settings))
    assert keys_only.intact, "the database alone cannot tell (what the finding showed)"
    report = verify_chain(hub.store.engine, trust=trust(hub))
    assert not report.intact
    assert {"anchor-mismatch"} <= kinds(report)
    assert report.first_problem is not None and report.first_problem.seq == second

    # Replay refuses it and changes nothing.
    def projection() -> list[Any]:
        with hub.store.read() as conn:
            return list(conn.execute(select(resource_current).order_by("seq")).all())

    before = projection()
    with pytest.raises(TamperedLog):
        replay(hub.store, trust=trust(hub))
    assert projection() == before
    hub.store.engine.dispose()

    # The commands say so too.
    verified = fhirhub("verify", "--db", database_url, data_dir=tmp_path)
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "TAMPERED" in verified.stdout and "anchor-mismatch" in verified.stdout
    replayed = fhirhub("replay", "--db", database_url, data_dir=tmp_path)
    assert replayed.returncode == 1 and "anchor-mismatch" in replayed.stderr


def test_deleted_newest_signature_alone_is_named(database_url: str, tmp_path: Path) -> None:
    hub = build_hub(make_settings(database_url, tmp_path, listeners=False))
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        write_patients(client, 2)
        signed = sign(client)
    with hub.store.engine.begin() as conn:
        conn.execute(delete(chain_signature).where(chain_signature.c.seq == signed))
    report = verify_chain(hub.store.engine, trust=trust(hub))
    assert kinds(report) == {"signature-removed"}
    # Cutting the tail off the log: the anchored head is gone.
    with hub.store.engine.begin() as conn:
        conn.execute(delete(resource_current).where(resource_current.c.seq == signed))
        conn.execute(delete(rv).where(rv.c.seq == signed))
    assert "anchor-missing" in kinds(verify_chain(hub.store.engine, trust=trust(hub)))
    hub.store.engine.dispose()


def test_entries_older_than_the_limit_need_a_signature(sqlite_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        sqlite_url,
        tmp_path,
        listeners=False,
        plugin_config={"integrity": {"chain_sign_interval": 0, "max_unsigned_age": 0.3}},
    )
    hub = build_hub(settings)
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        write_patients(client, 1)
        assert verify_chain(hub.store.engine, trust=trust(hub)).intact  # young enough
        time.sleep(0.5)
        report = verify_chain(hub.store.engine, trust=trust(hub))
        assert kinds(report) == {"stale-signature"}
        sign(client)
    assert verify_chain(hub.store.engine, trust=trust(hub)).intact


def test_a_torn_or_forged_anchor_line(sqlite_url: str, tmp_path: Path) -> None:
    hub = build_hub(make_settings(sqlite_url, tmp_path, listeners=False))
    with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
        write_patients(client, 1)
        sign(client)
    path = tmp_path / "chain-anchor.ndjson"
    line = json.loads(path.read_text().splitlines()[0])
    with path.open("a") as handle:  # a crash mid-append: skipped
        handle.write('{"seq": 9, "head"')
    assert verify_chain(hub.store.engine, trust=trust(hub)).intact
    line["head"] = "00" * 32  # an edited line does not verify
    path.write_text(json.dumps(line) + "\n")
    assert "anchor-invalid" in kinds(verify_chain(hub.store.engine, trust=trust(hub)))


class _Witness(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Witness.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_signed_heads_are_posted_to_a_witness(sqlite_url: str, tmp_path: Path) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Witness)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/heads"
    try:
        settings = make_settings(
            sqlite_url,
            tmp_path,
            listeners=False,
            plugin_config={"integrity": {"witness_url": url, "chain_sign_interval": 0}},
        )
        hub = build_hub(settings)
        with TestClient(create_app(hub=hub), base_url="http://testserver") as client:
            write_patients(client, 1)
            seq = sign(client)
            assert client.get("/healthz").status_code == 200
        assert [head["seq"] for head in _Witness.received] == [seq]
        assert (
            _Witness.received[0]["head"]
            == AnchorFile(tmp_path / "chain-anchor.ndjson").read()[0].head_hash.hex()
        )
    finally:
        server.shutdown()
    assert max(log_seqs(hub)) == seq
