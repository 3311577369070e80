"""Messages the parser must read as sent, end to end through the store: raw line breaks
inside a field, character sets, and a required field that is unusable (AE naming it)."""

from __future__ import annotations

from fhirhub.adapters.hl7.processing import handle
from fhirhub.core.hub import Hub
from tests.adapters.hl7.stored import errs, stored


def test_a_report_with_raw_line_breaks_and_a_charset_is_stored_as_sent(hub: Hub) -> None:
    raw = (
        b"MSH|^~\\&|PACS|RAD|HUB|HUB|20240301||ORU^R01|NL-9|P|2.5.1||||||UNICODE UTF-8\r"
        b"PID|1||NL-9^^^RAD^MR||M\\XC3BC\\ller^J\\XC3A9\\r\\XC3B4\\me||19700101|M\r"
        b"OBR|1||ACC-9^RAD|36643-5^XR Chest^LN||||||||||||||||||||F\r"
        b"OBX|1|TX|18782-3^Findings^LN||No focal consolidation.\nHeart size normal.||||||F\r"
    )
    outcome = handle(hub, raw)
    assert outcome.code == "AA", outcome.error
    (patient,) = stored(hub, "Patient", identifier="urn:fhirhub:hl7v2:RAD|NL-9")
    assert patient["name"][0] == {"family": "Müller", "given": ["Jérôme"]}
    (finding,) = stored(hub, "Observation")
    assert finding["valueString"] == "No focal consolidation.\nHeart size normal."


def test_an_unusable_required_field_is_ae_naming_that_field(hub: Hub) -> None:
    raw = (
        b"MSH|^~\\&|LIS|LAB|HUB|HUB|20240301||ORU^R01|AE-1|P|2.5.1\r"
        b"PID|1||||Nobody^No\r"
        b"OBX|1|NM|718-7^Hemoglobin^LN||12|g/dL^^UCUM|||||F\r"
    )
    outcome = handle(hub, raw)
    assert outcome.code == "AE"
    (err,) = errs(outcome.ack)
    assert (err[2], err[3].split("^")[0], err[4]) == ("PID^1^3", "101", "E")
    assert stored(hub, "Observation") == []
