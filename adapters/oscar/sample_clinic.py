"""A synthetic British Columbia family practice as OSCAR table rows (invented people).

Used by the demo (``source = "demo"``), the tests (loaded into a real MariaDB with OSCAR's
schema) and the benchmark. Deterministic for a seed. It carries the shapes a real OSCAR
holds: BC PHNs (``hc_type = 'BC'``) and a few Ontario health numbers, partial and unknown
birth dates, zero dates, deceased and inactive patients, allergies of each TYPECODE (some
archived), prescriptions (long-term, PRN, archived, ended), measurements with blood pressure
as ``130/85`` text, a non-numeric value and a type without a LOINC code, appointments of every
status and blocked slots (``demographic_no = 0``), and notes with revisions and CPP issues.
"""

from __future__ import annotations

import random
import uuid
from datetime import date, datetime, timedelta
from typing import Any

Rows = dict[str, list[dict[str, Any]]]

FAMILY = (
    "Nguyen",
    "Singh",
    "Wong",
    "Smith",
    "Brown",
    "Lee",
    "Tremblay",
    "Martin",
    "Chen",
    "Gill",
    "Wilson",
    "Taylor",
    "Sandhu",
    "Leblanc",
    "Campbell",
    "Anderson",
    "Kaur",
    "Li",
    "Thomas",
    "Roy",
)
GIVEN_F = ("Olivia", "Emma", "Priya", "Mei", "Chloe", "Sophie", "Harpreet", "Grace", "Ava", "Leah")
GIVEN_M = ("Liam", "Noah", "Arjun", "Wei", "Lucas", "Ethan", "Jaspreet", "Owen", "Mateo", "Ryan")
CITIES = (
    ("Vancouver", "V5K 0A1"),
    ("Burnaby", "V5H 2E2"),
    ("Surrey", "V3T 4W7"),
    ("Richmond", "V6X 1A9"),
    ("Victoria", "V8W 1N8"),
    ("Kelowna", "V1Y 9R2"),
)
STREETS = ("Main St", "Kingsway", "Granville St", "Fraser St", "Oak St", "King George Blvd")
ALLERGENS = (  # (DESCRIPTION, TYPECODE, DIN or None, reaction)
    ("PENICILLINS", 8, None, "Hives"),
    ("Amoxicillin", 10, "02230243", "Rash"),
    ("SULFAMETHOXAZOLE", 12, None, "Anaphylaxis"),
    ("Codeine Contin", 13, "02230302", "Nausea"),
    ("Peanuts", 0, None, "Swelling of lips"),
    ("Latex", 14, None, "Contact dermatitis"),
)
DRUGS = (  # (BN, GN, ATC, DIN, takemin, takemax, unit, freq, route)
    (
        "APO-METFORMIN 500MG",
        "METFORMIN HYDROCHLORIDE",
        "A10BA02",
        "02167786",
        1,
        1,
        "tab",
        "BID",
        "PO",
    ),
    ("RAMIPRIL 5MG", "RAMIPRIL", "C09AA05", "02221837", 1, 1, "cap", "OD", "PO"),
    ("ATORVASTATIN 20MG", "ATORVASTATIN CALCIUM", "C10AA05", "02295288", 1, 1, "tab", "QHS", "PO"),
    ("VENTOLIN HFA", "SALBUTAMOL SULFATE", "R03AC02", "02241497", 1, 2, "puff", "Q4H", "INH"),
    ("TYLENOL #3", "ACETAMINOPHEN/CODEINE", "N02AJ06", "00653241", 1, 2, "tab", "Q6H", "PO"),
    ("AMOXICILLIN 500MG", "AMOXICILLIN", "J01CA04", "00406724", 1, 1, "cap", "TID", "PO"),
    (
        "LEVOTHYROXINE 100MCG",
        "LEVOTHYROXINE SODIUM",
        "H03AA01",
        "02172100",
        1,
        1,
        "tab",
        "QAM",
        "PO",
    ),
)
MEASUREMENT_TYPES = (  # (type, display, description, instruction)
    ("BP", "BP", "Blood Pressure", "sitting position"),
    ("HT", "HT", "Height", "in cm"),
    ("WT", "WT", "Weight", "in kg"),
    ("TEMP", "Temp", "Temperature", "degrees Celsius"),
    ("HR", "P", "Heart Rate", "in bpm (nnn) Range:40-180"),
    ("RESP", "RESP", "Respiration Rate", "breaths/min"),
    ("02", "Oxygen Saturation", "Oxygen Saturation", "percent"),
    ("BMI", "Body Mass Index", "BMI", "BMI"),
    ("WAIS", "Waist", "Waist circumference", "in cm"),
    ("A1C", "A1C", "A1C", "Range:0.040-0.200"),
    ("LDL", "LDL", "Low Density Lipid", "monitor every 1-3 year"),
    ("FEET", "FEET", "Feet Check skin", "pulses (Yes/No)"),
    ("SMK", "Smoking", "Smoking status", "Yes/No"),
)
ISSUES = (
    ("SocHistory", "Social History"),
    ("FamHistory", "Family History"),
    ("MedHistory", "Medical History"),
    ("Concerns", "Ongoing Concerns"),
    ("Reminders", "Reminders"),
)
SOCIAL = (
    "Non-smoker. Works as a teacher. Walks daily.",
    "Ex-smoker, quit 2015. Two children.",
    "Drinks 2-3 glasses of wine weekly. Lives alone.",
)
FAMILY_HX = (
    "Mother: type 2 diabetes. Father: MI at 62.",
    "Sister: breast cancer at 48.",
    "No significant family history.",
)
MEDICAL = (
    "Type 2 diabetes mellitus",
    "Essential hypertension",
    "Asthma since childhood",
    "Hypothyroidism",
    "Osteoarthritis of the knee",
)
ENCOUNTER_TEXT = (
    "Follow-up of blood pressure. Tolerating ramipril. Continue.",
    "Annual physical. Counselled on diet and exercise.",
    "URTI symptoms for 3 days. Supportive care advised.",
    "Diabetes review. A1C improving. Foot exam normal.",
)


def phn(rng: random.Random) -> str:
    """A 10-digit BC PHN shape (starts with 9) with a valid mod-11 check digit."""
    while True:
        body = [9] + [rng.randint(0, 9) for _ in range(8)]
        weights = (2, 4, 8, 5, 10, 9, 7, 3)
        total = sum((d * w) % 11 for d, w in zip(body[1:], weights, strict=True))
        check = 11 - total % 11
        if check < 10:
            return "".join(map(str, body)) + str(check)


def generate(
    patients: int = 60, *, seed: int = 7, per_patient: int = 20, today: date | None = None
) -> Rows:
    """Rows of every table the adapter reads. ``per_patient`` scales the clinical rows (about
    that many allergies, drugs, measurements, appointments and note revisions per patient)."""
    rng = random.Random(seed)
    today = today or date(2025, 6, 2)
    stamp = datetime(today.year, today.month, today.day, 8, 0, 0)
    rows: Rows = {
        t: []
        for t in (
            "provider",
            "demographic",
            "demographicExt",
            "allergies",
            "drugs",
            "measurementType",
            "measurements",
            "measurementsExt",
            "appointment",
            "issue",
            "casemgmt_note",
            "casemgmt_issue",
            "casemgmt_issue_notes",
        )
    }
    providers = [
        ("100001", "Patel", "Anita", "doctor", "Family Medicine", "F", "12345", "CPSBC"),
        ("100002", "MacDonald", "Robert", "doctor", "Family Medicine", "M", "23456", "CPSBC"),
        ("100003", "Chow", "Karen", "doctor", "Internal Medicine", "F", "34567", "CPSBC"),
        ("100004", "Dhillon", "Simran", "nurse", "", "F", "R7788", "BCCNP"),
        ("100005", "Front", "Desk", "receptionist", "", "U", None, None),
    ]
    for provider_no, last, first, kind, specialty, sex, licence, licence_type in providers:
        rows["provider"].append(
            {
                "provider_no": provider_no,
                "last_name": last,
                "first_name": first,
                "provider_type": kind,
                "specialty": specialty,
                "sex": sex,
                "dob": None,
                "address": "1200 Main St, Vancouver BC",
                "phone": "",
                "work_phone": "604-555-0100",
                "email": f"{first.lower()}@clinic.example",
                "ohip_no": "",
                "billing_no": provider_no[-5:] if kind == "doctor" else "",
                "status": "1",
                "practitionerNo": licence,
                "practitionerNoType": licence_type,
                "title": "Dr." if kind == "doctor" else None,
                "lastUpdateDate": stamp - timedelta(days=400),
            }
        )
    doctors = [p[0] for p in providers if p[3] == "doctor"]
    # Ids well above OSCAR's seed rows (oscardata.sql fills measurementType and issue).
    for i, (code, display, description, instruction) in enumerate(MEASUREMENT_TYPES, start=9001):
        rows["measurementType"].append(
            {
                "id": i,
                "type": code,
                "typeDisplayName": display,
                "typeDescription": description,
                "measuringInstruction": instruction,
                "validation": "",
                "createDate": stamp - timedelta(days=3000),
            }
        )
    for i, (code, description) in enumerate(ISSUES, start=9001):
        rows["issue"].append(
            {
                "issue_id": i,
                "code": code,
                "description": description,
                "role": "doctor",
                "update_date": stamp - timedelta(days=3000),
                "priority": None,
                "type": "system",
                "sortOrderId": 0,
            }
        )
    issue_ids = {code: i for i, (code, _d) in enumerate(ISSUES, start=9001)}
    counters = dict.fromkeys(
        ("allergy", "drug", "measurement", "ext", "appointment", "note", "cissue"), 0
    )

    def next_id(name: str) -> int:
        counters[name] += 1
        return counters[name]

    for number in range(1, patients + 1):
        female = rng.random() < 0.52
        given = rng.choice(GIVEN_F if female else GIVEN_M)
        family = rng.choice(FAMILY)
        city, postal = rng.choice(CITIES)
        year = rng.randint(1935, 2020)
        month, day = f"{rng.randint(1, 12):02d}", f"{rng.randint(1, 28):02d}"
        if number % 17 == 0:
            month, day = "", ""  # only the year is known
        elif number % 19 == 0:
            day = "00"  # year and month known
        elif number % 23 == 0:
            year, month, day = 0, "", ""  # unknown birth date (year 0)
        status = "AC"
        if number % 13 == 0:
            status = "IN"
        if number % 29 == 0:
            status = "DE"
        ontario = number % 11 == 0
        doctor = doctors[number % len(doctors)]
        updated = stamp - timedelta(days=rng.randint(1, 900), minutes=number)
        rows["demographic"].append(
            {
                "demographic_no": number,
                "title": "MS" if female else "MR",
                "last_name": family,
                "first_name": given,
                "middleNames": "",
                "address": f"{rng.randint(100, 9999)} {rng.choice(STREETS)}",
                "city": city,
                "province": "ON" if ontario else "BC",
                "postal": postal,
                "phone": f"604-555-{rng.randint(1000, 9999)}",
                "phone2": "" if rng.random() < 0.6 else f"778-555-{rng.randint(1000, 9999)}",
                "email": f"{given.lower()}.{family.lower()}{number}@mail.example"
                if rng.random() < 0.7
                else "",
                "year_of_birth": f"{year:04d}",
                "month_of_birth": month,
                "date_of_birth": day,
                "hin": f"{rng.randint(1000000000, 9999999999)}" if ontario else phn(rng),
                "ver": "AB" if ontario else "",
                "hc_type": "ON" if ontario else "BC",
                "hc_renew_date": "0000-00-00" if number % 3 else today + timedelta(days=700),
                "roster_status": rng.choice(("RO", "RO", "NR", "FS")),
                "roster_date": "0001-01-01",
                "patient_status": status,
                "patient_status_date": (today - timedelta(days=90))
                if status == "DE"
                else "0000-00-00",
                "date_joined": today - timedelta(days=rng.randint(30, 5000)),
                "chart_no": f"C{number:05d}",
                "official_lang": "English",
                "spoken_lang": rng.choice(("English", "English", "Punjabi", "Cantonese", "French")),
                "provider_no": doctor,
                "sex": "F" if female else "M",
                "lastUpdateDate": updated,
                "lastUpdateUser": doctor,
                "hc_renew_date_": None,
            }
        )
        rows["demographic"][-1].pop("hc_renew_date_")
        if rng.random() < 0.5:
            rows["demographicExt"].append(
                {
                    "demographic_no": number,
                    "provider_no": doctor,
                    "key_val": "demo_cell",
                    "value": f"250-555-{rng.randint(1000, 9999)}",
                    "date_time": updated,
                    "hidden": "0",
                }
            )
        scale = max(1, per_patient)
        for _ in range(rng.randint(0, 2) + (1 if scale > 30 else 0)):
            desc, typecode, din, reaction = rng.choice(ALLERGENS)
            archived = rng.random() < 0.1
            rows["allergies"].append(
                {
                    "allergyid": next_id("allergy"),
                    "demographic_no": number,
                    "entry_date": today - timedelta(days=rng.randint(1, 2000)),
                    "DESCRIPTION": desc,
                    "TYPECODE": typecode,
                    "reaction": reaction,
                    "drugref_id": None,
                    "regional_identifier": din,
                    "archived": "1" if archived else "0",
                    "start_date": "0000-00-00"
                    if rng.random() < 0.4
                    else today - timedelta(days=rng.randint(100, 9000)),
                    "age_of_onset": "0",
                    "severity_of_reaction": rng.choice("1234"),
                    "onset_of_reaction": rng.choice("1234"),
                    "life_stage": rng.choice(("A", "C", None)),
                    "position": 0,
                    "providerNo": doctor,
                    "lastUpdateDate": updated + timedelta(minutes=rng.randint(1, 500)),
                    "nonDrug": 0,
                }
            )
        for _ in range(rng.randint(1, max(1, scale // 5))):
            bn, gn, atc, din, tmin, tmax, unit, freq, route = rng.choice(DRUGS)
            start = today - timedelta(days=rng.randint(1, 1500))
            long_term = rng.random() < 0.4
            ended = start + timedelta(days=rng.choice((10, 30, 90, 365)))
            archived = rng.random() < 0.08
            rows["drugs"].append(
                {
                    "drugid": next_id("drug"),
                    "provider_no": doctor,
                    "demographic_no": number,
                    "rx_date": start,
                    "end_date": "0001-01-01" if long_term and rng.random() < 0.5 else ended,
                    "written_date": start,
                    "BN": bn,
                    "GN": gn,
                    "GCN_SEQNO": 0,
                    "customName": None,
                    "takemin": tmin,
                    "takemax": tmax,
                    "freqcode": freq,
                    "duration": "30",
                    "durunit": "D",
                    "quantity": "60",
                    "repeat": rng.randint(0, 5),
                    "nosubs": 0,
                    "prn": 1 if freq in ("Q4H", "Q6H") else 0,
                    "special": f"{bn}\nTake {tmin}{'-' + str(tmax) if tmax != tmin else ''} {unit} {freq}",
                    "special_instruction": "with food" if rng.random() < 0.3 else None,
                    "archived": 1 if archived else 0,
                    "archived_reason": rng.choice(
                        ("deleted", "adverseReaction", "ineffectiveTreatment")
                    )
                    if archived
                    else "",
                    "ATC": atc,
                    "regional_identifier": din,
                    "unit": unit,
                    "method": "Take",
                    "route": route,
                    "drug_form": "TABLET",
                    "long_term": 1 if long_term else 0,
                    "short_term": 0 if long_term else 1,
                    "past_med": 0,
                    "position": 0,
                    "lastUpdateDate": updated + timedelta(minutes=rng.randint(1, 500)),
                    "dispenseInternal": 0,
                    "create_date": stamp,
                }
            )
        visits = max(1, scale // 10)
        for v in range(visits):
            observed = datetime.combine(
                today - timedelta(days=rng.randint(1, 1000)), datetime.min.time()
            ) + timedelta(hours=9 + v % 7)
            entered = observed + timedelta(minutes=5)
            sys_bp, dia_bp = rng.randint(100, 165), rng.randint(60, 100)
            height = rng.randint(150, 192)
            weight = round(rng.uniform(50, 110), 1)
            values = [
                ("BP", f"{sys_bp}/{dia_bp}"),
                ("HT", str(height)),
                ("WT", str(weight)),
                ("HR", str(rng.randint(55, 100))),
                ("LDL", f"{rng.uniform(1.5, 4.5):.2f}"),
                ("TEMP", f"{rng.uniform(36.2, 37.8):.1f}"),
                ("BMI", f"{weight / (height / 100) ** 2:.1f}"),
                ("02", str(rng.randint(94, 100))),
                ("RESP", str(rng.randint(12, 20))),
                ("WAIS", str(rng.randint(70, 110))),
                ("A1C", f"{rng.uniform(0.05, 0.09):.3f}"),
                ("FEET", rng.choice(("Yes", "No"))),
                ("SMK", rng.choice(("Yes", "No"))),
            ]
            for kind, value in values[: max(3, min(len(values), scale // visits))]:
                measurement_id = next_id("measurement")
                rows["measurements"].append(
                    {
                        "id": measurement_id,
                        "type": kind,
                        "demographicNo": number,
                        "providerNo": doctor,
                        "dataField": value,
                        "measuringInstruction": "" if kind != "BP" else "sitting position",
                        "comments": "" if rng.random() < 0.9 else "repeat in 2 weeks",
                        "dateObserved": "0000-00-00 00:00:00" if rng.random() < 0.03 else observed,
                        "dateEntered": entered,
                        "appointmentNo": None,
                    }
                )
                if kind == "LDL":
                    for keyval, val in (
                        ("identifier", "22748-8"),
                        ("unit", "mmol/L"),
                        ("range", "< 3.5"),
                        ("abnormal", "H" if float(value) > 3.5 else "N"),
                    ):
                        rows["measurementsExt"].append(
                            {
                                "id": next_id("ext"),
                                "measurement_id": measurement_id,
                                "keyval": keyval,
                                "val": val,
                            }
                        )
        for _ in range(rng.randint(2, max(2, scale // 8))):
            appt_day = today + timedelta(days=rng.randint(-400, 60))
            start_h, start_m = rng.randint(9, 16), rng.choice((0, 15, 30, 45))
            past = appt_day < today
            status = (
                rng.choice(("B", "B", "BS", "N", "C", "H"))
                if past
                else rng.choice(("t", "t", "T", "C"))
            )
            rows["appointment"].append(
                _appointment(
                    next_id("appointment"),
                    doctor,
                    appt_day,
                    start_h,
                    start_m,
                    15,
                    number,
                    f"{family},{given}",
                    status,
                    stamp,
                    rng,
                )
            )
        for n in range(max(1, scale // 12)):
            note_uuid = str(uuid.UUID(int=rng.getrandbits(128)))
            revisions = 1 + (1 if rng.random() < 0.35 else 0) + (1 if rng.random() < 0.1 else 0)
            observed = stamp - timedelta(days=rng.randint(1, 700))
            cpp = None if n else rng.choice((None, "SocHistory", "FamHistory", "MedHistory"))
            body = {
                "SocHistory": rng.choice(SOCIAL),
                "FamHistory": rng.choice(FAMILY_HX),
                "MedHistory": rng.choice(MEDICAL),
            }.get(cpp or "", rng.choice(ENCOUNTER_TEXT))
            note_ids = []
            for r in range(revisions):
                note_id = next_id("note")
                note_ids.append(note_id)
                rows["casemgmt_note"].append(
                    {
                        "note_id": note_id,
                        "update_date": observed + timedelta(hours=r * 3),
                        "observation_date": observed,
                        "demographic_no": number,
                        "provider_no": doctor,
                        "note": body if r == 0 else f"{body}\n[revised {r}] Reviewed with patient.",
                        "signed": 1 if r == revisions - 1 else 0,
                        "include_issue_innote": 0,
                        "signing_provider_no": doctor if r == revisions - 1 else "",
                        "encounter_type": "face to face encounter with client" if not cpp else "",
                        "billing_code": "",
                        "program_no": "10016",
                        "reporter_caisi_role": "1",
                        "reporter_program_team": "0",
                        "history": "",
                        "password": None,
                        "locked": "0",
                        "archived": 0,
                        "position": 0,
                        "uuid": note_uuid,
                        "appointmentNo": None,
                    }
                )
            if cpp:
                cissue_id = next_id("cissue")
                rows["casemgmt_issue"].append(
                    {
                        "id": cissue_id,
                        "demographic_no": number,
                        "issue_id": issue_ids[cpp],
                        "acute": 0,
                        "certain": 1,
                        "major": 0,
                        "resolved": 0,
                        "program_id": 10016,
                        "type": "doctor",
                        "update_date": observed,
                    }
                )
                for note_id in note_ids:
                    rows["casemgmt_issue_notes"].append({"id": cissue_id, "note_id": note_id})
    # Blocked time (demographic_no = 0): lunch and admin blocks for each doctor.
    for k, doctor in enumerate(doctors):
        for d in range(3):
            block_day = today + timedelta(days=d + k)
            rows["appointment"].append(
                _appointment(
                    next_id("appointment"),
                    doctor,
                    block_day,
                    12,
                    0,
                    60,
                    0,
                    "LUNCH" if d else "ADMIN",
                    "t",
                    stamp,
                    rng,
                )
            )
    return rows


def _appointment(
    number: int,
    doctor: str,
    day: date,
    hour: int,
    minute: int,
    length: int,
    demographic_no: int,
    name: str,
    status: str,
    stamp: datetime,
    rng: random.Random,
) -> dict[str, Any]:
    start = datetime(day.year, day.month, day.day, hour, minute)
    end = start + timedelta(minutes=length - 1)  # OSCAR keeps the last minute of the booking
    return {
        "appointment_no": number,
        "provider_no": doctor,
        "appointment_date": day,
        "start_time": start.time(),
        "end_time": end.time(),
        "name": name,
        "demographic_no": demographic_no,
        "program_id": 0,
        "notes": "" if demographic_no else "blocked",
        "reason": rng.choice(("Follow-up", "Annual physical", "Rx renewal", "Sore throat"))
        if demographic_no
        else "",
        "location": "Main clinic",
        "resources": "",
        "type": rng.choice(("Office visit", "Phone", "")) if demographic_no else "",
        "style": "",
        "billing": "",
        "status": status,
        "imported_status": None,
        "createdatetime": stamp - timedelta(days=rng.randint(1, 60)),
        "updatedatetime": stamp - timedelta(minutes=rng.randint(1, 90000)),
        "creator": doctor,
        "lastupdateuser": doctor,
        "remarks": "",
        "urgency": None,
        "creatorSecurityId": None,
        "bookingSource": None,
    }
