"""Patient administration as senders really send it, read back from the store: dates,
visit updates, family members, race and ethnicity, diagnoses, classes, the ACK's warnings."""

from __future__ import annotations

from fhirhub.core.hub import Hub
from tests.adapters.hl7.stored import history, send, stored, warned

SYSTEM = "urn:fhirhub:hl7v2:GOODHOSP"


def adt(event: str, control: str, *rows: str, pid: str = "", msh9: str = "") -> str:
    header = (
        f"MSH|^~\\&|REG|GOODHOSP|HUB|HUB|20240301080000+0100||{msh9 or 'ADT^' + event}|"
        f"{control}|P|2.5.1"
    )
    return "\n".join(
        [header, f"EVN|{event}|20240301080000", pid or "PID|1||A-1^^^GOODHOSP^MR||Adams^Ann", *rows]
    )


def test_dates_are_read_as_the_standard_writes_them_and_others_are_warned(hub: Hub) -> None:
    for control, birth in (("D-1", "800101"), ("D-2", "1980-01-01"), ("D-3", "DOB")):
        pid = f"PID|1||{control}^^^GOODHOSP^MR||Adams^Ann||{birth}|F"
        outcome = send(hub, adt("A04", control, pid=pid))
        assert outcome.code == "AA"
        assert f"{birth!r} is not a valid date" in warned(outcome.ack)["PID^1^7"]
        (patient,) = stored(hub, "Patient", identifier=f"{SYSTEM}|{control}")
        assert "birthDate" not in patient and patient["gender"] == "female"
    pid = "PID|1||D-4^^^GOODHOSP^MR||Adams^Ann||198002|F"  # YYYYMM: month precision
    outcome = send(hub, adt("A04", "D-4", pid=pid))
    assert outcome.code == "AA" and warned(outcome.ack) == {}
    (patient,) = stored(hub, "Patient", identifier=f"{SYSTEM}|D-4")
    assert patient["birthDate"] == "1980-02"


def test_an_update_without_a_status_change_keeps_the_encounter_status(hub: Hub) -> None:
    visit = "PV1|1|I|W1^101^A||||||||||||||||V-1|||||||||||||||||||||||||20240301070000"
    assert send(hub, adt("A01", "E-1", visit)).code == "AA"
    moved = visit.replace("W1^101^A", "W2^202^B")
    assert send(hub, adt("A08", "E-2", moved)).code == "AA"
    (encounter,) = stored(hub, "Encounter", identifier=f"{SYSTEM}|V-1")
    assert encounter["status"] == "in-progress"
    assert encounter["location"][0]["location"]["display"].startswith("W2 202 B")
    assert send(hub, adt("A03", "E-3", moved)).code == "AA"
    (encounter,) = stored(hub, "Encounter", identifier=f"{SYSTEM}|V-1")
    assert encounter["status"] == "finished"
    versions = history(hub, "Encounter", encounter["id"])
    assert [v["status"] for v in versions] == ["finished", "in-progress", "in-progress"]


def test_patient_classes_outside_the_map_are_unknown_not_guessed(hub: Hub) -> None:
    outcome = send(hub, adt("A04", "C-1", "PV1|1|R|CLINIC||||||||||||||||V-R"))
    assert outcome.code == "AA"
    assert "'R' has no encounter class" in warned(outcome.ack)["PV1^1^2"]
    (encounter,) = stored(hub, "Encounter", identifier=f"{SYSTEM}|V-R")
    assert encounter["class"]["code"] == "UNK"
    assert send(hub, adt("A04", "C-2", "PV1|1|E|ER||||||||||||||||V-E")).code == "AA"
    (encounter,) = stored(hub, "Encounter", identifier=f"{SYSTEM}|V-E")
    assert encounter["class"]["code"] == "EMER"


def test_next_of_kin_are_matched_by_who_they_are_not_by_position(hub: Hub) -> None:
    mother = "NK1|{n}|Adams^Mary|MTH^Mother"
    spouse = "NK1|{n}|Adams^Sam|SPO^Spouse"
    assert send(hub, adt("A01", "K-1", mother.format(n=1), spouse.format(n=2))).code == "AA"
    assert send(hub, adt("A08", "K-2", spouse.format(n=1))).code == "AA"  # the mother not sent
    people = stored(hub, "RelatedPerson")
    assert sorted(p["name"][0]["given"][0] for p in people) == ["Mary", "Sam"]
    relationship = {
        p["name"][0]["given"][0]: p["relationship"][0]["coding"][0]["code"] for p in people
    }
    assert relationship == {"Mary": "MTH", "Sam": "SPO"}


def test_race_and_ethnicity_become_us_core_extensions(hub: Hub) -> None:
    pid = (
        "PID|1||RE-1^^^GOODHOSP^MR||Adams^Ann||19800101|F||2106-3^White^CDCREC~2029-7^Asian Indian^CDCREC"
        "||||||||||||2135-2^Hispanic or Latino^CDCREC"
    )
    assert send(hub, adt("A04", "RE-1", pid=pid)).code == "AA"
    (patient,) = stored(hub, "Patient", identifier=f"{SYSTEM}|RE-1")
    extensions = {e["url"].rsplit("-", 1)[1]: e["extension"] for e in patient["extension"]}
    race = {
        e["url"]: e.get("valueCoding", {}).get("code") or e.get("valueString")
        for e in extensions["race"]
    }
    assert race == {"ombCategory": "2106-3", "detailed": "2029-7", "text": "White, Asian Indian"}
    assert extensions["ethnicity"][0]["valueCoding"]["code"] == "2135-2"


def test_diagnosis_type_is_kept(hub: Hub) -> None:
    rows = [
        "DG1|1||I10^Essential hypertension^I10||20240301|W",
        "DG1|2||E11.9^Diabetes^I10||20240301|F",
    ]
    assert send(hub, adt("A01", "G-1", *rows)).code == "AA"
    found = {c["code"]["coding"][0]["code"]: c for c in stored(hub, "Condition")}
    assert found["I10"]["category"][1]["coding"][0]["code"] == "W"
    assert found["I10"]["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert found["E11.9"]["verificationStatus"]["coding"][0]["code"] == "confirmed"


def test_message_type_without_trigger_component_and_z_segments_noted(hub: Hub) -> None:
    outcome = send(hub, adt("A04", "M-1", "ZPI|1|local stuff", msh9="ADT_A04"))
    assert outcome.code == "AA"
    (info,) = [e for e in outcome.ack.decode().split("\r") if e.startswith("ERR|")]
    assert info.split("|")[4] == "I" and "ZPI" in info
    assert stored(hub, "Patient", identifier=f"{SYSTEM}|A-1")
