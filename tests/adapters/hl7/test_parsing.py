from __future__ import annotations

import pytest

from fhirhub.adapters.hl7.parsing import Hl7ParseError, parse, parse_strict, split_batch, unescape
from tests.adapters.hl7.conftest import fixture


def test_fields_components_repetitions_and_missing_trailing_fields() -> None:
    message = parse(fixture("adt_a01.hl7"))
    pid = message.first("PID")
    assert pid is not None
    assert message.message_type == "ADT^A01"
    assert message.version == "2.5.1"
    assert message.sender == "REGADT@GOODHOSP"
    assert pid.get(3, 1) == "MRN123"
    assert pid.get(3, 4, 2) == "1.2.3.4"
    assert pid.get(3, 1, repetition=1) == "999-11-2222"
    assert pid.get(40) == ""  # beyond the last field sent
    assert pid.get(5, 9) == ""  # beyond the last component sent


def test_line_feed_and_crlf_separators() -> None:
    assert [s.name for s in parse(fixture("oru_r01.hl7")).segments][:3] == ["MSH", "PID", "OBR"]
    assert [s.name for s in parse(fixture("adt_a40.hl7")).segments] == ["MSH", "EVN", "PID", "MRG"]


def test_escape_sequences() -> None:
    obx = parse(fixture("oru_r01.hl7")).all("OBX")[2]
    assert obx.get(5) == "Fasting & rested|ok"
    assert unescape(r"a\X41\b\.br\c") == "aAb\nc"
    assert unescape(r"unknown \Q\ stays") == r"unknown \Q\ stays"


def test_byte_order_mark_and_mllp_bytes_are_stripped() -> None:
    raw = b"\xef\xbb\xbf\x0b" + fixture("adt_a01.hl7") + b"\x1c\r"
    assert parse(raw).control_id == "CTRL-A01-1"


def test_z_segments_are_kept() -> None:
    raw = fixture("adt_a01.hl7") + b"ZPI|1|custom^value\r"
    assert parse(raw).first("ZPI") is not None


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b"PID|1||123\r", "100", None),
        (b"garbage \x00\x01\x02", "100", None),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|9.9\r", "203", 12),
        (b"MSH|^^^^|A|B|C|D|20240101||ADT^A01|1|P|2.5\r", "102", 2),
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01||P|2.5\r", "101", 10),
    ],
)
def test_unreadable_messages_say_where(raw: bytes, code: str, field: int | None) -> None:
    with pytest.raises(Hl7ParseError) as caught:
        parse(raw)
    assert caught.value.code == code
    assert caught.value.field == field


def test_batch_split() -> None:
    one = fixture("adt_a01.hl7").decode()
    two = fixture("siu_s12.hl7").decode()
    batch = f"FHS|^~\\&\rBHS|^~\\&\r{one}{two}BTS|2\rFTS|1\r"
    parts = split_batch(batch)
    assert len(parts) == 2
    assert parse(parts[1]).message_type == "SIU^S12"


def test_strict_hl7apy_parse_takes_the_version_explicitly() -> None:
    text = fixture("adt_a01.hl7").decode()
    message = parse_strict(text, "2.5.1")
    assert message.msh.msh_10.value == "CTRL-A01-1"  # type: ignore[attr-defined]
    with pytest.raises(Hl7ParseError):
        parse_strict(text, "2.3")
