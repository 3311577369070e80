from __future__ import annotations

from fhirhub.adapters.hl7.ack import ErrorLocation, Header, acknowledgments
from fhirhub.adapters.hl7.parsing import parse
from tests.adapters.hl7.conftest import fixture


def test_original_mode_ack_mirrors_the_header() -> None:
    header = Header.of(parse(fixture("adt_a01.hl7")))
    (ack,) = acknowledgments(header, "AA")
    msh, msa = ack.decode().rstrip("\r").split("\r")
    fields = msh.split("|")
    assert fields[2:6] == ["FHIRHUB", "HUB", "REGADT", "GOODHOSP^1.2.3.4^ISO"]
    assert fields[8] == "ACK^A01^ACK"
    assert fields[11] == "2.5.1"
    assert msa == "MSA|AA|CTRL-A01-1|"


def test_error_ack_names_segment_and_field() -> None:
    header = Header.of(parse(fixture("adt_a01.hl7")))
    where = ErrorLocation("101", "PID-3 (patient identifier list) is empty", "PID", 1, 3)
    (ack,) = acknowledgments(header, "AE", where.text, where)
    err = ack.decode().split("\r")[2].split("|")
    assert err[0] == "ERR"
    assert err[2] == "PID^1^3"
    assert err[3] == "101^Required field missing^HL70357"
    assert err[4] == "E"


def test_enhanced_mode_accept_always_application_never() -> None:
    header = Header.of(parse(fixture("oru_r01.hl7")))  # MSH-15 AL, MSH-16 NE
    acks = acknowledgments(header, "AA")
    assert len(acks) == 1
    assert b"MSA|CA|CTRL-ORU-1" in acks[0]


def test_salvaged_header_for_unparseable_input() -> None:
    raw = b"MSH|^~\\&|APP|FAC|||20240101||ADT^A01|X-9|P|9.9\rPID|oops"
    header = Header.salvage(raw)
    assert (header.control_id, header.sending_app, header.trigger) == ("X-9", "APP", "A01")
    assert Header.salvage(b"\x00\x01garbage").control_id == ""


def test_enhanced_mode_rejection_reaches_a_sender_that_wants_application_acks_only() -> None:
    raw = fixture("bar_p01.hl7").replace(b"|P|2.5.1", b"|P|2.5.1|||NE|AL")
    header = Header.of(parse(raw))
    where = ErrorLocation("200", "Unsupported message type BAR^P01", "MSH", 1, 9)
    (ack,) = acknowledgments(header, "AR", where.text, where)
    assert b"MSA|AR|CTRL-BAR-1" in ack and b"\rERR|" in ack
    (accepted,) = acknowledgments(header, "AA")
    assert b"MSA|AA|CTRL-BAR-1" in accepted
    never = Header.of(parse(fixture("bar_p01.hl7").replace(b"|P|2.5.1", b"|P|2.5.1|||NE|NE")))
    assert acknowledgments(never, "AR", where.text, where) == []


def test_an_aa_carries_its_warnings_as_err_segments_with_severity_w() -> None:
    dropped = ErrorLocation("102", "OBX-14: not a date", "OBX", 3, 14, severity="W")
    coerced = ErrorLocation("102", "OBX-6.1: not UCUM", "OBX", 2, 6, 1, severity="W")
    header = Header.of(parse(fixture("adt_a01.hl7")))  # original mode: AA
    (ack,) = acknowledgments(header, "AA", warnings=[dropped, coerced])
    lines = ack.decode().rstrip("\r").split("\r")
    assert lines[1].startswith("MSA|AA|CTRL-A01-1")
    first, second = (line.split("|") for line in lines[2:])
    assert (first[2], first[4], first[8]) == ("OBX^3^14", "W", "OBX-14: not a date")
    assert (second[2], second[4]) == ("OBX^2^6^1^1", "W")
    # enhanced mode, MSH-15 AL / MSH-16 NE: the accept ACK is the only one, so it tells
    (accept,) = acknowledgments(Header.of(parse(fixture("oru_r01.hl7"))), "AA", warnings=[dropped])
    assert b"MSA|CA|" in accept and b"|OBX^3^14|" in accept and b"|W|" in accept


def test_a_batch_is_answered_with_the_same_envelope() -> None:
    from fhirhub.adapters.hl7.ack import batch_acknowledgment

    header = Header.of(parse(fixture("adt_a01.hl7")))
    answer = batch_acknowledgment(
        [b"BHS|^~\\&|APP|FAC|HUB|HF|20240101||||B-1"], acknowledgments(header, "AA")
    )
    lines = answer.decode().rstrip("\r").split("\r")
    assert lines[0].split("|")[2:6] == ["HUB", "HF", "APP", "FAC"]
    assert lines[0].split("|")[11] == "B-1"
    assert lines[-1] == "BTS|1"
