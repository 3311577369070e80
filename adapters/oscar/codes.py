"""Code tables between OSCAR's codes and FHIR R4's.

Each table cites where OSCAR's codes come from (its seed data in ``oscardata.sql``, its
application code's constants as documented in the transfer objects) and which FHIR value set
or code system the target belongs to. Codes missing here are kept as OSCAR's own local
codings, never guessed.
"""

from __future__ import annotations

from typing import NamedTuple

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
ATC = "http://www.whocc.no/atc"
#: Health Canada Drug Identification Number (HL7's registered NamingSystem).
DIN = "http://hl7.org/fhir/NamingSystem/ca-hc-din"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
COURSE_OF_THERAPY = "http://terminology.hl7.org/CodeSystem/medicationrequest-course-of-therapy"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"

#: Provincial health numbers by ``demographic.hc_type``. BC's PHN and Ontario's health card
#: number have registered OIDs (HL7 OID registry); the other provinces use Canada Health
#: Infoway's NamingSystem URIs (``ca-<province>-patient-healthcare-id``), the documented
#: fallback; an hc_type that is no Canadian province keeps a local system (see docs/oscar.md).
HEALTH_NUMBER_SYSTEMS = {
    "BC": "urn:oid:2.16.840.1.113883.4.50",
    "ON": "urn:oid:2.16.840.1.113883.4.59",
}
PROVINCES = ("AB", "SK", "MB", "QC", "NB", "NS", "PE", "NL", "YT", "NT", "NU")


def health_number_system(hc_type: str | None, local_base: str) -> str:
    code = (hc_type or "").strip().upper()
    if code in HEALTH_NUMBER_SYSTEMS:
        return HEALTH_NUMBER_SYSTEMS[code]
    if code in PROVINCES:
        return f"https://fhir.infoway-inforoute.ca/NamingSystem/ca-{code.lower()}-patient-healthcare-id"
    return f"{local_base}/hin/{code or 'unknown'}"


#: demographic.sex -> Patient.gender (administrative-gender, required binding).
GENDER = {"M": "male", "F": "female", "T": "other", "O": "other", "U": "unknown"}

#: demographic.patient_status (OSCAR's seed list): AC active, IN inactive, DE deceased,
#: MO moved, FI fired (discharged from the practice).
ACTIVE_PATIENT_STATUSES = {"AC"}
DECEASED_PATIENT_STATUS = "DE"
PATIENT_STATUS_DISPLAY = {
    "AC": "Active",
    "IN": "Inactive",
    "DE": "Deceased",
    "MO": "Moved",
    "FI": "Fired",
}
ROSTER_STATUS_DISPLAY = {
    "RO": "Rostered",
    "NR": "Not rostered",
    "TE": "Roster terminated",
    "FS": "Fee for service",
}

#: allergies.TYPECODE (OSCAR's drug-database allergen types) -> AllergyIntolerance.category.
#: 8 ATC class, 10 generic name, 11 brand composite, 12 ingredient (``medication``);
#: 13 brand name (``medication``); 14 and 0 a non-drug or custom entry: no category.
ALLERGY_CATEGORY = {
    8: "medication",
    10: "medication",
    11: "medication",
    12: "medication",
    13: "medication",
}
#: allergies.severity_of_reaction: 1 mild, 2 moderate, 3 severe, 4 unknown.
ALLERGY_SEVERITY = {"1": "mild", "2": "moderate", "3": "severe"}
#: allergies.onset_of_reaction: 1 immediate, 2 gradual, 3 slow, 4 unknown (kept as text).
ALLERGY_ONSET = {"1": "Immediate", "2": "Gradual", "3": "Slow"}
#: allergies.life_stage: N newborn, I infant, C child, T adolescent, A adult.
LIFE_STAGE = {"N": "Newborn", "I": "Infant", "C": "Child", "T": "Adolescent", "A": "Adult"}

#: appointment.status's first letter (``appointment_status`` seed rows) -> Appointment.status.
#: A second letter ``S`` means "signed" (a billing flag) and does not change the state.
APPOINTMENT_STATUS = {
    "t": "booked",  # To Do
    "T": "booked",  # Daysheet Printed
    "H": "arrived",  # Here
    "P": "checked-in",  # Picked (by a clinician)
    "E": "checked-in",  # Empty room (in a room)
    "N": "noshow",  # No Show
    "C": "cancelled",  # Cancelled
    "B": "fulfilled",  # Billed
    "a": "booked",
    "b": "booked",
    "c": "booked",
    "d": "booked",
    "e": "booked",
}
#: Appointment statuses after which the visit happened: an Encounter is written.
ENCOUNTER_STATUS = {"arrived": "arrived", "checked-in": "in-progress", "fulfilled": "finished"}


class MeasurementCode(NamedTuple):
    loinc: str
    display: str
    unit: str  # UCUM
    vital: bool


#: measurements.type -> LOINC and UCUM (vital-signs profile codes, R4 §8.2.1 "Vital Signs").
#: BP is split into the 85354-9 panel's components (see :data:`BP_COMPONENTS`).
MEASUREMENT_CODES: dict[str, MeasurementCode] = {
    "HT": MeasurementCode("8302-2", "Body height", "cm", True),
    "WT": MeasurementCode("29463-7", "Body weight", "kg", True),
    "TEMP": MeasurementCode("8310-5", "Body temperature", "Cel", True),
    "HR": MeasurementCode("8867-4", "Heart rate", "/min", True),
    "PULS": MeasurementCode("8867-4", "Heart rate", "/min", True),
    "RESP": MeasurementCode("9279-1", "Respiratory rate", "/min", True),
    "02": MeasurementCode(
        "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", True
    ),
    "O2SA": MeasurementCode(
        "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", "%", True
    ),
    "BMI": MeasurementCode("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", True),
    "WAIS": MeasurementCode(
        "8280-0", "Waist Circumference at umbilicus by Tape measure", "cm", True
    ),
    "WC": MeasurementCode("8280-0", "Waist Circumference at umbilicus by Tape measure", "cm", True),
    "HEAD": MeasurementCode("9843-4", "Head Occipital-frontal circumference", "cm", True),
    "A1C": MeasurementCode("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood", "%", False),
    "LDL": MeasurementCode(
        "22748-8", "Cholesterol in LDL [Moles/volume] in Serum or Plasma", "mmol/L", False
    ),
    "HDL": MeasurementCode(
        "14646-4", "Cholesterol in HDL [Moles/volume] in Serum or Plasma", "mmol/L", False
    ),
    "TCHL": MeasurementCode(
        "14647-2", "Cholesterol [Moles/volume] in Serum or Plasma", "mmol/L", False
    ),
    "TG": MeasurementCode(
        "14927-8", "Triglyceride [Moles/volume] in Serum or Plasma", "mmol/L", False
    ),
    "FBS": MeasurementCode(
        "14771-0", "Fasting glucose [Moles/volume] in Serum or Plasma", "mmol/L", False
    ),
    "BG": MeasurementCode("15074-8", "Glucose [Moles/volume] in Blood", "mmol/L", False),
    "EGFR": MeasurementCode(
        "33914-3",
        "Glomerular filtration rate/1.73 sq M.predicted [Volume Rate/Area] in Serum or Plasma by Creatinine-based formula (MDRD)",
        "mL/min/{1.73_m2}",
        False,
    ),
    "SCR": MeasurementCode(
        "14682-9", "Creatinine [Moles/volume] in Serum or Plasma", "umol/L", False
    ),
    "ACR": MeasurementCode("32294-1", "Albumin/Creatinine [Ratio] in Urine", "mg/mmol", False),
    "INR": MeasurementCode(
        "6301-6", "INR in Platelet poor plasma by Coagulation assay", "{INR}", False
    ),
}
BP_PANEL = MeasurementCode(
    "85354-9", "Blood pressure panel with all children optional", "mm[Hg]", True
)
BP_COMPONENTS = (
    ("8480-6", "Systolic blood pressure"),
    ("8462-4", "Diastolic blood pressure"),
)
#: LOINC -> OSCAR type, for the write-back of vital signs (the first OSCAR type wins).
OSCAR_TYPE_BY_LOINC: dict[str, str] = {}
for _type, _code in MEASUREMENT_CODES.items():
    if _code.vital:
        OSCAR_TYPE_BY_LOINC.setdefault(_code.loinc, _type)
OSCAR_TYPE_BY_LOINC[BP_PANEL.loinc] = "BP"

#: drugs.freqcode -> Timing.repeat (frequency per period). OSCAR's Rx module offers these
#: codes; anything else stays in the dosage text only.
FREQUENCIES: dict[str, tuple[int, float, str]] = {
    "OD": (1, 1, "d"),
    "QD": (1, 1, "d"),
    "DAILY": (1, 1, "d"),
    "QAM": (1, 1, "d"),
    "QPM": (1, 1, "d"),
    "QHS": (1, 1, "d"),
    "BID": (2, 1, "d"),
    "TID": (3, 1, "d"),
    "QID": (4, 1, "d"),
    "Q1H": (1, 1, "h"),
    "Q2H": (1, 2, "h"),
    "Q3H": (1, 3, "h"),
    "Q4H": (1, 4, "h"),
    "Q6H": (1, 6, "h"),
    "Q8H": (1, 8, "h"),
    "Q12H": (1, 12, "h"),
    "Q1W": (1, 1, "wk"),
    "QWEEK": (1, 1, "wk"),
    "Q2W": (1, 2, "wk"),
    "Q1M": (1, 1, "mo"),
    "QMONTH": (1, 1, "mo"),
}
#: Timing.repeat.when for the time-of-day codes (event-timing value set).
FREQUENCY_WHEN = {"QAM": "MORN", "QPM": "EVE", "QHS": "HS"}
#: drugs.durunit -> UCUM duration units.
DURATION_UNITS = {"D": ("d", "days"), "W": ("wk", "weeks"), "M": ("mo", "months")}
#: drugs.route -> SNOMED CT route of administration.
ROUTES = {
    "PO": ("26643006", "Oral route"),
    "SL": ("37839007", "Sublingual route"),
    "TOP": ("6064005", "Topical route"),
    "INH": ("18679011000001101", "Inhalation"),
    "IM": ("78421000", "Intramuscular route"),
    "SC": ("34206005", "Subcutaneous route"),
    "IV": ("47625008", "Intravenous route"),
    "PR": ("37161004", "Rectal route"),
    "OPH": ("54485002", "Ophthalmic route"),
    "NAS": ("46713006", "Nasal route"),
}
#: drugs.archived_reason values meaning "recorded in error" (others mean discontinued).
ARCHIVED_IN_ERROR = {"deleted", "error", "docerror", "entryerror", "duplicate"}

#: CPP issue codes (``issue.code``) filed on notes -> the resource that also records them.
SOCIAL_HISTORY_ISSUES = {"SocHistory"}
FAMILY_HISTORY_ISSUES = {"FamHistory"}
CONDITION_ISSUES = {"MedHistory", "Concerns"}

#: provider.provider_type -> practitioner-role code (http://terminology.hl7.org/CodeSystem/practitioner-role).
PRACTITIONER_ROLE = {
    "doctor": "doctor",
    "nurse": "nurse",
    "resident": "doctor",
    "pharmacist": "pharmacist",
}
#: provider.practitionerNoType -> the licence's NamingSystem (Infoway URIs).
LICENCE_SYSTEMS = {
    "CPSBC": "https://fhir.infoway-inforoute.ca/NamingSystem/ca-bc-license-physician",
    "CPSO": "https://fhir.infoway-inforoute.ca/NamingSystem/ca-on-license-physician",
    "BCCNP": "https://fhir.infoway-inforoute.ca/NamingSystem/ca-bc-license-nurse",
    "CNO": "https://fhir.infoway-inforoute.ca/NamingSystem/ca-on-license-nurse",
}
