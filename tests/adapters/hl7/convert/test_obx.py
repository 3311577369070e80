"""Results as a lab sends them, read back from the store: updates of one result, structured
numerics, units, comments, embedded documents, and the warnings in the ACK."""

from __future__ import annotations

import base64

from fhirhub.core.hub import Hub
from tests.adapters.hl7.stored import history, send, stored, warned

PATIENT = "PID|1||R-100^^^LAB^MR||Result^Rita||19700101|F"


def oru(control: str, obr: str, *rows: str) -> str:
    header = f"MSH|^~\\&|LIS|LAB|HUB|HUB|20240301080000+0100||ORU^R01|{control}|P|2.5.1"
    return "\n".join([header, PATIENT, obr, *rows])


OBR = "OBR|1|PL-1|FL-1^LIS|57021-8^CBC^LN|||20240301070000+0100||||||||||||||||||{status}"


def test_final_corrected_and_deleted_results_update_the_same_observation(hub: Hub) -> None:
    row = "OBX|1|NM|718-7^Hemoglobin^LN||{value}|g/dL^^UCUM|12-16||||{status}"
    assert (
        send(hub, oru("R-1", OBR.format(status="P"), row.format(value="11", status="P"))).code
        == "AA"
    )
    assert (
        send(hub, oru("R-2", OBR.format(status="F"), row.format(value="12", status="F"))).code
        == "AA"
    )
    assert (
        send(hub, oru("R-3", OBR.format(status="C"), row.format(value="13", status="C"))).code
        == "AA"
    )
    (result,) = stored(hub, "Observation", code="http://loinc.org|718-7")
    assert result["status"] == "corrected" and result["valueQuantity"]["value"] == 13
    versions = history(hub, "Observation", result["id"])
    assert [v["status"] for v in versions] == ["corrected", "final", "preliminary"]
    assert [v["valueQuantity"]["value"] for v in versions] == [13, 12, 11]
    (report,) = stored(hub, "DiagnosticReport")
    assert report["status"] == "corrected" and len(report["result"]) == 1
    assert (
        send(hub, oru("R-4", OBR.format(status="C"), row.format(value="13", status="D"))).code
        == "AA"
    )
    (result,) = stored(hub, "Observation", code="http://loinc.org|718-7")
    assert result["status"] == "entered-in-error"


def test_sub_ids_keep_several_results_with_one_code_apart(hub: Hub) -> None:
    rows = [
        "OBX|1|ST|8251-1^Comment^LN|1|first||||||F",
        "OBX|2|ST|8251-1^Comment^LN|2|second||||||F",
    ]
    assert send(hub, oru("S-1", OBR.format(status="F"), *rows)).code == "AA"
    assert sorted(o["valueString"] for o in stored(hub, "Observation")) == ["first", "second"]
    rows[1] = rows[1].replace("second", "second, corrected").replace("||F", "||C")
    assert send(hub, oru("S-2", OBR.format(status="C"), *rows)).code == "AA"
    assert sorted(o["valueString"] for o in stored(hub, "Observation")) == [
        "first",
        "second, corrected",
    ]


def test_structured_numerics_keep_their_structure(hub: Hub) -> None:
    rows = [
        "OBX|1|SN|5370-2^Titer^LN||^1^:^128||||||F",
        "OBX|2|SN|2345-7^Glucose^LN||^140^-^150|mg/dL^^UCUM|||||F",
        "OBX|3|SN|33914-3^eGFR^LN||>^60|mL/min/{1.73_m2}^^UCUM|||||F",
        "OBX|4|SN|5803-2^pH^LN||=^6.5||||||F",
        "OBX|5|SN|20454-5^Protein^LN||^2^+||||||F",
    ]
    outcome = send(hub, oru("SN-1", OBR.format(status="F"), *rows))
    assert outcome.code == "AA" and warned(outcome.ack) == {}
    found = {o["code"]["coding"][0]["code"]: o for o in stored(hub, "Observation")}
    ratio = found["5370-2"]["valueRatio"]
    assert (ratio["numerator"]["value"], ratio["denominator"]["value"]) == (1, 128)
    value_range = found["2345-7"]["valueRange"]
    assert (value_range["low"]["value"], value_range["high"]["value"]) == (140, 150)
    assert value_range["low"]["code"] == "mg/dL"
    assert found["33914-3"]["valueQuantity"]["comparator"] == ">"
    assert found["33914-3"]["valueQuantity"]["value"] == 60
    assert found["5803-2"]["valueQuantity"] == {"value": 6.5}
    assert found["20454-5"]["valueString"] == "2+"


def test_only_valid_ucum_codes_are_labelled_ucum_and_the_rest_is_warned(hub: Hub) -> None:
    rows = [
        "OBX|1|NM|2951-2^Sodium^LN||140|mmol/L^millimole per liter^UCUM|||||F",
        "OBX|2|NM|2823-3^Potassium^LN||4.1|mEq/L|||||F",
        "OBX|3|NM|26464-8^WBC^LN||8.2|cells/uL^cells per microliter|||||F",
    ]
    outcome = send(hub, oru("U-1", OBR.format(status="F"), *rows))
    assert outcome.code == "AA"
    found = {o["code"]["coding"][0]["code"]: o["valueQuantity"] for o in stored(hub, "Observation")}
    assert found["2951-2"] == {
        "value": 140,
        "unit": "millimole per liter",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert found["2823-3"] == {"value": 4.1, "unit": "mEq/L"}
    assert found["26464-8"] == {"value": 8.2, "unit": "cells per microliter"}
    warnings = warned(outcome.ack)
    assert set(warnings) == {"OBX^2^6^1^1", "OBX^3^6^1^1"}
    assert "'mEq/L' is not a valid UCUM code" in warnings["OBX^2^6^1^1"]


def test_comments_become_notes(hub: Hub) -> None:
    rows = [
        "NTE|1||Specimen slightly hemolyzed",
        "OBX|1|ST|21668-1^Factor V Leiden^LN||SEE COMMENTS||||||F",
        "NTE|1||Heterozygous for the Factor V Leiden mutation.~Genetic counselling advised.",
    ]
    outcome = send(hub, oru("N-1", OBR.format(status="F"), *rows))
    assert outcome.code == "AA" and warned(outcome.ack) == {}
    (result,) = stored(hub, "Observation")
    assert result["note"] == [
        {"text": "Heterozygous for the Factor V Leiden mutation.\nGenetic counselling advised."}
    ]
    (report,) = stored(hub, "DiagnosticReport")
    (note,) = report["extension"]
    assert note["valueAnnotation"] == {"text": "Specimen slightly hemolyzed"}


def test_a_comment_with_no_place_in_fhir_is_warned_not_silently_dropped(hub: Hub) -> None:
    message = oru("N-2", OBR.format(status="F"), "OBX|1|ST|8251-1^Comment^LN||ok||||||F")
    message = message.replace(PATIENT, PATIENT + "\nNTE|1||Patient prefers mornings")
    outcome = send(hub, message)
    assert outcome.code == "AA"
    assert "comment after PID" in warned(outcome.ack)["NTE^1^3"]


def test_an_embedded_pdf_is_stored_and_presented_by_the_report(hub: Hub) -> None:
    pdf = b"%PDF-1.4 fake report\n%%EOF"
    data = base64.b64encode(pdf).decode()
    rows = [
        "OBX|1|ST|8251-1^Comment^LN||see attached||||||F",
        f"OBX|2|ED|11526-1^Pathology report^LN||LIS^AP^PDF^Base64^{data}||||||F",
    ]
    outcome = send(hub, oru("ED-1", OBR.format(status="F"), *rows))
    assert outcome.code == "AA"
    (report,) = stored(hub, "DiagnosticReport")
    (form,) = report["presentedForm"]
    assert form["contentType"] == "application/pdf" and form["url"].startswith("Binary/")
    (document,) = stored(hub, "DocumentReference")
    assert document["content"][0]["attachment"]["url"] == form["url"]
    assert document["subject"] == report["subject"]
    with hub.store.read() as conn:
        from fhirhub.fhir_store.store import read_current

        binary = read_current(conn, "Binary", form["url"].split("/")[1])
    assert binary is not None
    import orjson

    stored_binary = orjson.loads(binary.content or b"{}")
    assert base64.b64decode(stored_binary["data"]) == pdf
    assert stored_binary["securityContext"] == report["subject"]
    assert len(stored(hub, "Observation")) == 1  # the PDF is not an Observation


def test_missing_statuses_are_unknown_and_warned_never_final(hub: Hub) -> None:
    rows = [
        "OBX|1|NM|718-7^Hemoglobin^LN||12|g/dL^^UCUM|||||",
        "OBX|2|TX|||continuation line of the report||||||F",
    ]
    outcome = send(hub, oru("ST-1", OBR.format(status=""), *rows))
    assert outcome.code == "AA"
    (report,) = stored(hub, "DiagnosticReport")
    assert report["status"] == "unknown"
    by_status = {o["status"]: o for o in stored(hub, "Observation")}
    assert by_status["unknown"]["valueQuantity"]["value"] == 12
    assert by_status["final"]["valueString"] == "continuation line of the report"
    warnings = warned(outcome.ack)
    assert set(warnings) == {"OBR^1^25", "OBX^1^11", "OBX^2^3"}


def test_an_impossible_date_drops_that_field_only(hub: Hub) -> None:
    rows = [
        "OBX|1|NM|718-7^Hemoglobin^LN||12|g/dL^^UCUM|||||F|||20240231083000",
        "OBX|2|NM|4544-3^Hematocrit^LN||38|%^^UCUM|||||F|||20240301083000",
    ]
    outcome = send(hub, oru("D-1", OBR.format(status="F"), *rows))
    assert outcome.code == "AA"
    assert "'20240231083000' is not a valid date" in warned(outcome.ack)["OBX^1^14"]
    found = {o["code"]["coding"][0]["code"]: o for o in stored(hub, "Observation")}
    assert "effectiveDateTime" not in found["718-7"]
    assert found["718-7"]["valueQuantity"]["value"] == 12
    # no offset: the sender's zone as MSH-7 gives it
    assert found["4544-3"]["effectiveDateTime"] == "2024-03-01T08:30:00+01:00"


def test_two_obr_with_the_same_order_numbers_are_two_reports(hub: Hub) -> None:
    message = oru(
        "O-1",
        OBR.format(status="F"),
        "OBX|1|NM|718-7^Hemoglobin^LN||12|g/dL^^UCUM|||||F",
        "OBR|2|PL-1|FL-1^LIS|24317-0^Differential^LN|||||||||||||||||||||F",
        "OBX|1|NM|770-8^Neutrophils^LN||60|%^^UCUM|||||F",
        "SPM|1|SP-1&LIS^SP-9&LIS||BLD^Whole blood^HL70487|||||||||||||20240301070000+0100",
    )
    assert send(hub, message).code == "AA"
    reports = {r["code"]["coding"][0]["code"]: r for r in stored(hub, "DiagnosticReport")}
    assert set(reports) == {"57021-8", "24317-0"}
    assert len(reports["24317-0"]["result"]) == 1
    (specimen,) = stored(hub, "Specimen")
    assert specimen["type"]["coding"][0]["code"] == "BLD"
    assert specimen["collection"]["collectedDateTime"] == "2024-03-01T07:00:00+01:00"
    assert reports["24317-0"]["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert send(hub, message.replace("O-1", "O-2").replace("||60|", "||61|")).code == "AA"
    assert len(stored(hub, "DiagnosticReport")) == 2
    neutrophils = stored(hub, "Observation", code="http://loinc.org|770-8")
    assert [o["valueQuantity"]["value"] for o in neutrophils] == [61]
