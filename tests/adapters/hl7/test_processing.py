"""End to end against a real store (SQLite and PostgreSQL): commit, ACK, duplicates, dead
letters and replay."""

from __future__ import annotations

from fhirhub.adapters.hl7.dead_letters import list_dead_letters, load_dead_letter
from fhirhub.adapters.hl7.processing import handle
from fhirhub.core.hub import Hub
from fhirhub.fhir_store.store import read_current
from tests.adapters.hl7.conftest import fixture


def test_adt_is_committed_then_acknowledged_and_duplicates_are_not_reprocessed(hub: Hub) -> None:
    outcome = handle(hub, fixture("adt_a01.hl7"))
    assert outcome.code == "AA", outcome.error
    assert b"MSA|AA|CTRL-A01-1" in outcome.ack
    from fhirhub.adapters.hl7.convert import message_key

    assert outcome.message is not None
    with hub.store.read() as conn:
        provenance = read_current(conn, "Provenance", message_key(outcome.message))
    assert provenance is not None
    again = handle(hub, fixture("adt_a01.hl7"))
    assert again.code == "AA" and again.duplicate
    with hub.store.read() as conn:
        assert read_current(conn, "Provenance", message_key(outcome.message)).version_id == (
            provenance.version_id
        )


def test_result_for_the_same_patient_reuses_the_patient(hub: Hub) -> None:
    assert handle(hub, fixture("adt_a01.hl7")).code == "AA"
    assert handle(hub, fixture("oru_r01.hl7")).code == "AA"
    assert handle(hub, fixture("adt_a40.hl7")).code == "AA"
    assert handle(hub, fixture("siu_s12.hl7")).code == "AA"


def test_rejected_message_becomes_a_dead_letter_and_replays(hub: Hub) -> None:
    outcome = handle(hub, fixture("bar_p01.hl7"))
    assert outcome.code == "AR"
    assert b"ERR|" in outcome.ack and b"MSH^1^9" in outcome.ack
    letters = list_dead_letters(hub)
    assert [t["id"] for t in letters] == [outcome.dead_letter]
    task, raw = load_dead_letter(hub, outcome.dead_letter or "")
    assert raw == fixture("bar_p01.hl7")
    assert "Unsupported message type BAR^P01" in task["statusReason"]["text"]


def test_garbage_is_kept_and_answered(hub: Hub) -> None:
    outcome = handle(hub, b"\x00\x01 not hl7 at all")
    assert outcome.code == "AR"
    assert list_dead_letters(hub)[0]["id"] == outcome.dead_letter


def test_reused_control_id_with_other_content_is_processed_not_dropped(hub: Hub) -> None:
    first = fixture("adt_a01.hl7")
    second = first.replace(b"Doe^Jane^Q", b"Doe^Janet^Q")
    assert handle(hub, first).code == "AA"
    outcome = handle(hub, second)
    assert outcome.code == "AA" and not outcome.duplicate
    assert handle(hub, second).duplicate
