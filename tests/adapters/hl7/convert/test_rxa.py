"""Immunization updates as an IIS sends them, read back from the store."""

from __future__ import annotations

from fhirhub.core.hub import Hub
from tests.adapters.hl7.stored import send, stored


def vxu(control: str, *rows: str) -> str:
    return "\n".join(
        [
            f"MSH|^~\\&|EHR|CLINIC|IIS|STATE|20240301||VXU^V04^VXU_V04|{control}|P|2.5.1",
            "PID|1||V-1^^^CLINIC^MR||Vax^Val||20200101|F",
            *rows,
        ]
    )


def dose(order: str, cvx: str, mvx: str, name: str, action: str = "A") -> list[str]:
    return [
        f"ORC|RE||{order}^CLINIC",
        f"RXA|0|1|20240301||{cvx}^vaccine^CVX|0.3|mL^milliliter^UCUM||00^New record^NIP001"
        f"||||||LOT-{order}||{mvx}^{name}^MVX|||CP|{action}",
    ]


def test_each_manufacturer_is_its_own_organization(hub: Hub) -> None:
    rows = dose("O-1", "208", "PFR", "Pfizer") + dose("O-2", "62", "MSD", "Merck")
    assert send(hub, vxu("VX-1", *rows)).code == "AA"
    names = {i["lotNumber"]: i["manufacturer"]["display"] for i in stored(hub, "Immunization")}
    assert names == {"LOT-O-1": "Pfizer", "LOT-O-2": "Merck"}
    organizations = stored(hub, "Organization", identifier="http://hl7.org/fhir/sid/mvx|PFR")
    assert [o["name"] for o in organizations] == ["Pfizer"]
    (immunization, _) = sorted(stored(hub, "Immunization"), key=lambda i: i["lotNumber"])
    assert immunization["doseQuantity"]["system"] == "http://unitsofmeasure.org"


def test_a_deleted_dose_becomes_entered_in_error(hub: Hub) -> None:
    assert send(hub, vxu("VX-2", *dose("O-3", "208", "PFR", "Pfizer"))).code == "AA"
    assert send(hub, vxu("VX-3", *dose("O-3", "208", "PFR", "Pfizer", action="D"))).code == "AA"
    (immunization,) = stored(hub, "Immunization")
    assert immunization["status"] == "entered-in-error"
