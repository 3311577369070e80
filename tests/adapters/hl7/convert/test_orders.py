"""Orders and the clinical context other messages carry, read back from the store."""

from __future__ import annotations

from fhirhub.core.hub import Hub
from tests.adapters.hl7.stored import send, stored


def test_a_pharmacy_order_becomes_a_medication_request(hub: Hub) -> None:
    message = "\n".join(
        [
            "MSH|^~\\&|CPOE|HOSP|PHARM|HOSP|20240301||ORM^O01|RX-1|P|2.5.1",
            "PID|1||P-1^^^HOSP^MR||Pill^Pat||19700101|M",
            "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives",
            "ORC|NW|PO-1^CPOE|||||||20240301",
            "RXO|197361^Amlodipine 5 MG Oral Tablet^RXNORM|5||mg^milligram^UCUM",
            "NTE|1||Take in the morning",
            "RXR|PO^Oral^HL70162",
            "DG1|1||I10^Essential hypertension^I10||20240301|A",
        ]
    )
    assert send(hub, message).code == "AA"
    (request,) = stored(hub, "MedicationRequest")
    assert request["medicationCodeableConcept"]["coding"][0]["code"] == "197361"
    dose = request["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]
    assert dose == {
        "value": 5,
        "unit": "milligram",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert request["note"] == [{"text": "Take in the morning"}]
    assert stored(hub, "ServiceRequest") == []
    (allergy,) = stored(hub, "AllergyIntolerance")
    assert allergy["code"]["coding"][0]["code"] == "70618"
    (condition,) = stored(hub, "Condition")
    assert condition["code"]["coding"][0]["code"] == "I10"


def test_allergies_and_diagnoses_in_a_result_message_are_kept(hub: Hub) -> None:
    message = "\n".join(
        [
            "MSH|^~\\&|LIS|LAB|HUB|HUB|20240301||ORU^R01|AD-1|P|2.5.1",
            "PID|1||P-2^^^LAB^MR||Pill^Pam||19700101|F",
            "AL1|1|FA|LATEX^Latex^L|MO",
            "OBR|1|PL-9|FL-9^LIS|24331-1^Lipid panel^LN||||||||||||||||||||F",
            "DG1|1||E78.5^Hyperlipidemia^I10||20240301|F",
            "OBX|1|NM|2093-3^Cholesterol^LN||212|mg/dL^^UCUM|||||F",
        ]
    )
    assert send(hub, message).code == "AA"
    assert [a["code"]["coding"][0]["code"] for a in stored(hub, "AllergyIntolerance")] == ["LATEX"]
    assert [c["code"]["coding"][0]["code"] for c in stored(hub, "Condition")] == ["E78.5"]
