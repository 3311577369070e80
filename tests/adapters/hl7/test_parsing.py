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


def test_a_raw_line_feed_inside_a_field_is_content_when_cr_ends_segments() -> None:
    raw = (
        b"MSH|^~\\&|LAB|F|HUB|H|20240101||ORU^R01|NL-1|P|2.5.1\r"
        b"PID|1||M1||Doe^Jane\r"
        b"OBX|1|TX|11526-1^Path report^LN||first line\nsecond line\nOBX is in the text\r"
        b"NTE|1||after\nthe break\r"
    )
    message = parse(raw)
    assert [s.name for s in message.segments] == ["MSH", "PID", "OBX", "NTE"]
    assert message.all("OBX")[0].get(5) == "first line\nsecond line\nOBX is in the text"
    assert message.first("NTE").get(3) == "after\nthe break"  # type: ignore[union-attr]


def test_a_line_feed_before_a_segment_still_separates_when_cr_is_used() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|NL-2|P|2.5.1\r\nPID|1||M1\nPV1|1|I\r"
    assert [s.name for s in parse(raw).segments] == ["MSH", "PID", "PV1"]


def test_hex_escapes_decode_with_the_declared_character_set() -> None:
    utf8 = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CS-1|P|2.5.1\rPID|1||M1||M\\XC3BC\\ller\r"
    assert parse(utf8).first("PID").get(5) == "Müller"  # type: ignore[union-attr]
    latin = (
        b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CS-2|P|2.5.1||||||8859/1\r"
        b"PID|1||M1||M\\XFC\\ller^J\\XE9\\r\\XF4\\me\r"
    )
    pid = parse(latin).first("PID")
    assert pid is not None and (pid.get(5, 1), pid.get(5, 2)) == ("Müller", "Jérôme")
    cyrillic = "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CS-3|P|2.5.1||||||8859/5\rPID|1||M1||Иванов\r"
    pid = parse(cyrillic.encode("iso8859-5")).first("PID")
    assert pid is not None and pid.get(5) == "Иванов"


def test_segments_know_their_occurrence_for_err() -> None:
    message = parse(fixture("oru_r01.hl7"))
    assert [s.sequence for s in message.all("OBX")] == [1, 2, 3, 4]
    assert message.first("PID").sequence == 1  # type: ignore[union-attr]


def test_a_second_msh_is_refused_never_merged() -> None:
    two = fixture("adt_a01.hl7") + b"\r" + fixture("adt_a01.hl7")
    with pytest.raises(Hl7ParseError) as caught:
        parse(two)
    assert (caught.value.segment, caught.value.sequence) == ("MSH", 2)


def test_split_messages_keeps_each_message_s_bytes() -> None:
    from fhirhub.adapters.hl7.parsing import split_messages

    first = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|S-1|P|2.5.1\rPID|1||M\xe91\r"
    second = b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|S-2|P|2.5.1\rPID|1||M2\r"
    assert split_messages(first).messages == [first]
    loose = split_messages(first + second)
    assert loose.messages == [first, second] and loose.batch == []
    batch = split_messages(b"FHS|^~\\&|A\rBHS|^~\\&|A\r" + first + second + b"BTS|2\rFTS|1\r")
    assert batch.messages == [first, second]
    assert batch.batch == [b"FHS|^~\\&|A", b"BHS|^~\\&|A"]


def test_versions_up_to_2_8_2_are_accepted() -> None:
    for version in ("2.3", "2.3.1", "2.8.1", "2.8.2"):
        raw = f"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|V-1|P|{version}\rPID|1||M1\r"
        assert parse(raw).version == version
