"""The version log's hash chain and signed heads: tampering with stored rows is detected and
named precisely, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from sqlalchemy import delete, func, insert, select, text, update

from fhirhub.fhir_store import chain
from fhirhub.fhir_store.chain import sign_head, verify_chain
from fhirhub.fhir_store.database import make_engine
from fhirhub.fhir_store.migrations import upgrade
from fhirhub.fhir_store.replay import replay
from fhirhub.fhir_store.schema import chain_signature, resource_version
from fhirhub.fhir_store.store import FhirStore
from fhirhub.fhir_store.tenancy import TENANT_SYSTEM

KEY = SigningKey(bytes(range(32)))
KEYS = {chain.key_id(KEY.verify_key): KEY.verify_key}


@pytest.fixture
def store(database_url: str) -> FhirStore:
    return FhirStore(make_engine(database_url))


def patient(family: str, tenant: str | None = None) -> dict[str, object]:
    resource: dict[str, object] = {"resourceType": "Patient", "name": [{"family": family}]}
    if tenant is not None:
        resource["meta"] = {"security": [{"system": TENANT_SYSTEM, "code": tenant}]}
    return resource


def write_log(store: FhirStore) -> list[int]:
    """Seven versions across creates, an update, a delete and a multi-row unit; their seqs."""
    with store.unit_of_work() as uow:
        uow.put("Patient", "a", patient("A"), method="POST")
    with store.unit_of_work() as uow:
        uow.put("Patient", "b", patient("B", tenant="org1"), method="POST")
        uow.put("Patient", "c", patient("C"), method="POST")
    with store.unit_of_work() as uow:
        uow.put("Patient", "a", patient("A2"))
    with store.unit_of_work() as uow:
        uow.delete("Patient", "b")
    with store.unit_of_work() as uow:
        uow.put("Patient", "d", patient("D"), method="POST")
        uow.put("Patient", "d", patient("D2"))
    with store.read() as conn:
        return list(conn.execute(select(resource_version.c.seq).order_by("seq")).scalars())


def row_at(store: FhirStore, seq: int) -> str:
    with store.read() as conn:
        row = conn.execute(
            select(
                resource_version.c.resource_type,
                resource_version.c.resource_id,
                resource_version.c.version_id,
            ).where(resource_version.c.seq == seq)
        ).one()
    return f"{row[0]}/{row[1]}/_history/{row[2]}"


def test_an_untouched_log_verifies(store: FhirStore) -> None:
    seqs = write_log(store)
    report = verify_chain(store.engine, KEYS)
    assert report.intact, report.problems
    assert report.entries == len(seqs) == 7
    assert report.head_seq == seqs[-1]
    assert report.signatures == 0 and report.unsigned_entries == 7


def test_every_row_stores_digest_and_link(store: FhirStore) -> None:
    write_log(store)
    with store.read() as conn:
        hashes = list(conn.execute(select(resource_version.c.hash).order_by("seq")).scalars())
    assert all(len(h) == chain.STORED_SIZE for h in hashes)
    previous = chain.GENESIS
    for stored in hashes:
        assert chain.chain_link(previous, stored[:32]) == stored[32:]
        previous = stored[32:]


def test_an_empty_log_verifies(store: FhirStore) -> None:
    report = verify_chain(store.engine, KEYS)
    assert report.intact and report.entries == 0 and report.head_seq is None
    assert sign_head(store.engine, KEY) is None


def test_altered_content_is_named(store: FhirStore) -> None:
    seqs = write_log(store)
    target = seqs[3]
    with store.engine.begin() as conn:
        conn.execute(
            update(resource_version)
            .where(resource_version.c.seq == target)
            .values(content=b'{"resourceType":"Patient","id":"a","name":[{"family":"X"}]}')
        )
    report = verify_chain(store.engine, KEYS)
    first = report.first_problem
    assert first is not None and len(report.problems) == 1
    assert (first.kind, first.seq, first.reference) == (
        chain.ALTERED,
        target,
        "Patient/a/_history/2",
    )


def test_an_altered_field_other_than_content_is_named(store: FhirStore) -> None:
    seqs = write_log(store)
    with store.engine.begin() as conn:
        conn.execute(
            update(resource_version).where(resource_version.c.seq == seqs[1]).values(tenant="org2")
        )
    first = verify_chain(store.engine, KEYS).first_problem
    assert first is not None and (first.kind, first.seq) == (chain.ALTERED, seqs[1])


def test_a_deleted_entry_is_named_at_its_successor(store: FhirStore) -> None:
    seqs = write_log(store)
    with store.engine.begin() as conn:
        conn.execute(delete(resource_version).where(resource_version.c.seq == seqs[2]))
    report = verify_chain(store.engine, KEYS)
    first = report.first_problem
    assert first is not None and len(report.problems) == 1
    assert (first.kind, first.seq) == (chain.DELETED, seqs[3])
    assert first.reference == "Patient/a/_history/2"
    assert "deleted" in first.describe()


def test_swapped_contents_are_named_at_the_first_of_the_two(store: FhirStore) -> None:
    seqs = write_log(store)
    a, b = seqs[0], seqs[2]
    with store.engine.begin() as conn:
        content = dict(
            conn.execute(
                select(resource_version.c.seq, resource_version.c.content).where(
                    resource_version.c.seq.in_([a, b])
                )
            ).all()
        )
        for seq, other in ((a, b), (b, a)):
            conn.execute(
                update(resource_version)
                .where(resource_version.c.seq == seq)
                .values(content=content[other])
            )
    report = verify_chain(store.engine, KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [(chain.ALTERED, a), (chain.ALTERED, b)]


def test_reordered_entries_are_named(store: FhirStore) -> None:
    seqs = write_log(store)
    a, b = seqs[1], seqs[4]
    with store.engine.begin() as conn:
        for old, new in ((a, -1), (b, a), (-1, b)):
            conn.execute(
                update(resource_version).where(resource_version.c.seq == old).values(seq=new)
            )
    report = verify_chain(store.engine, KEYS)
    first = report.first_problem
    assert first is not None
    assert (first.kind, first.seq) == (chain.REORDERED, a)
    assert first.reference == "Patient/b/_history/2"  # the tombstone now sits at seq a
    assert f"right after seq {seqs[3]}" in first.detail


def test_signed_heads_verify_and_cover_the_tail(store: FhirStore) -> None:
    seqs = write_log(store)
    signed = sign_head(store.engine, KEY)
    assert signed is not None and signed.seq == seqs[-1]
    assert sign_head(store.engine, KEY) is None  # already signed: nothing new
    report = verify_chain(store.engine, KEYS)
    assert report.intact and report.signatures == 1 and report.last_signed_seq == seqs[-1]
    assert report.unsigned_entries == 0

    # Cutting the tail off is invisible to the chain but not to the signature.
    with store.engine.begin() as conn:
        conn.execute(delete(resource_version).where(resource_version.c.seq == seqs[-1]))
    first = verify_chain(store.engine, KEYS).first_problem
    assert first is not None and (first.kind, first.seq) == (chain.SIGNED_HEAD_MISSING, seqs[-1])


def test_an_altered_signature_is_named(store: FhirStore) -> None:
    seqs = write_log(store)
    assert sign_head(store.engine, KEY) is not None
    with store.engine.begin() as conn:
        signature = conn.execute(select(chain_signature.c.signature)).scalar_one()
        forged = bytes([signature[0] ^ 1]) + signature[1:]
        conn.execute(update(chain_signature).values(signature=forged))
    first = verify_chain(store.engine, KEYS).first_problem
    assert first is not None
    assert (first.kind, first.seq, first.reference) == (
        chain.SIGNATURE_INVALID,
        seqs[-1],
        row_at(store, seqs[-1]),
    )


def test_an_unknown_signing_key_is_named(store: FhirStore) -> None:
    seqs = write_log(store)
    other = SigningKey.generate()
    assert sign_head(store.engine, other) is not None
    first = verify_chain(store.engine, KEYS).first_problem
    assert first is not None and (first.kind, first.seq) == (chain.UNKNOWN_KEY, seqs[-1])


def test_a_rewritten_chain_is_caught_by_the_signed_head(store: FhirStore) -> None:
    """Someone who alters a row and recomputes every hash after it keeps the chain consistent;
    only the signed head, which needs the private key, shows it."""
    seqs = write_log(store)
    assert sign_head(store.engine, KEY) is not None
    with store.engine.begin() as conn:
        conn.execute(
            update(resource_version)
            .where(resource_version.c.seq == seqs[0])
            .values(content=b'{"resourceType":"Patient","id":"a"}')
        )
        rows = [
            dict(r._mapping)
            for r in conn.execute(select(resource_version).order_by(resource_version.c.seq))
        ]
        chain.hash_rows(chain.GENESIS, rows)
        for row in rows:
            conn.execute(
                update(resource_version)
                .where(resource_version.c.seq == row["seq"])
                .values(hash=row["hash"])
            )
    report = verify_chain(store.engine, KEYS)
    assert [(p.kind, p.seq) for p in report.problems] == [(chain.SIGNATURE_INVALID, seqs[-1])]
    assert "rewritten" in report.problems[0].detail


def test_concurrent_writers_keep_one_valid_chain(store: FhirStore) -> None:
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for n in range(15):
                with store.unit_of_work() as uow:
                    uow.put("Patient", f"w{worker}-{n}", patient(f"W{worker}"), method="POST")
                    if n % 3 == 0:
                        uow.put("Patient", f"w{worker}-x{n}", patient("X"), method="POST")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    signer_stop = threading.Event()

    def signer() -> None:
        while not signer_stop.is_set():
            sign_head(store.engine, KEY)
            signer_stop.wait(0.01)

    signing = threading.Thread(target=signer)
    signing.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    signer_stop.set()
    signing.join()
    assert not errors
    report = verify_chain(store.engine, KEYS)
    assert report.intact, report.problems
    assert report.entries == 4 * (15 + 5)


def test_replay_leaves_the_chain_intact(store: FhirStore) -> None:
    write_log(store)
    sign_head(store.engine, KEY)
    replay(store)
    report = verify_chain(store.engine, KEYS)
    assert report.intact and report.signatures == 1


def test_verification_streams_in_pages(store: FhirStore) -> None:
    """Pages smaller than the log still check every link across page boundaries."""
    seqs = write_log(store)
    assert verify_chain(store.engine, KEYS, chunk=2).intact
    with store.engine.begin() as conn:
        conn.execute(delete(resource_version).where(resource_version.c.seq == seqs[4]))
    first = verify_chain(store.engine, KEYS, chunk=2).first_problem
    assert first is not None and (first.kind, first.seq) == (chain.DELETED, seqs[5])


def test_migration_0002_chains_rows_written_before_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    upgrade(engine, "0001")
    with engine.begin() as conn:
        for n in range(5):
            conn.execute(
                text(
                    "INSERT INTO resource_version (resource_type, resource_id, version_id,"
                    " last_updated, method, deleted, content)"
                    " VALUES ('Patient', :id, 1, :t, 'POST', 0, :c)"
                ),
                {"id": f"p{n}", "t": 1_700_000_000_000_000 + n, "c": b'{"resourceType":"Patient"}'},
            )
    upgrade(engine)
    report = verify_chain(engine, KEYS)
    assert report.intact and report.entries == 5
    store = FhirStore(engine)
    with store.unit_of_work() as uow:
        uow.put("Patient", "new", patient("New"), method="POST")
    assert verify_chain(engine, KEYS).intact
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(resource_version)).scalar() == 6
    engine.dispose()


def test_a_row_inserted_without_a_hash_is_named(store: FhirStore) -> None:
    write_log(store)
    with store.engine.begin() as conn:
        conn.execute(
            insert(resource_version).values(
                resource_type="Patient",
                resource_id="forged",
                version_id=1,
                last_updated=1,
                method="POST",
                deleted=False,
                content=b"{}",
            )
        )
    first = verify_chain(store.engine, KEYS).first_problem
    assert first is not None and first.kind == chain.UNHASHED
    assert first.reference == "Patient/forged/_history/1"


def test_replay_refuses_a_tampered_log_and_changes_nothing(store: FhirStore) -> None:
    from fhirhub.fhir_store.replay import TamperedLog
    from fhirhub.fhir_store.store import read_current

    write_log(store)
    with store.engine.begin() as conn:
        conn.execute(
            update(resource_version)
            .where(resource_version.c.resource_id == "c")
            .values(content=b'{"resourceType":"Patient","id":"c","name":[{"family":"Forged"}]}')
        )
    with pytest.raises(TamperedLog) as refused:
        replay(store)
    assert "altered" in refused.value.message and "Patient/c" in refused.value.message
    with store.read() as conn:  # the projection still holds what was written, not the forgery
        current = read_current(conn, "Patient", "c")
    assert current is not None and b"Forged" not in (current.content or b"")
