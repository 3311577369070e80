"""Words the router and the claim checks recognise: common laboratory and vital-sign tests by
LOINC code. Short on purpose; each entry is a test a clinician asks for by name."""

from __future__ import annotations

#: name (lower case, as typed) -> LOINC codes that answer it.
LAB_CODES: dict[str, tuple[str, ...]] = {
    "potassium": ("2823-3", "6298-4"),
    "sodium": ("2951-2", "2947-0"),
    "glucose": ("2339-0", "2345-7"),
    "creatinine": ("2160-0", "38483-4"),
    "urea nitrogen": ("6299-2", "3094-0"),
    "calcium": ("17861-6", "49765-1"),
    "chloride": ("2075-0",),
    "carbon dioxide": ("2028-9", "20565-8"),
    "hemoglobin a1c": ("4548-4",),
    "hba1c": ("4548-4",),
    "a1c": ("4548-4",),
    "hemoglobin": ("718-7",),
    "cholesterol": ("2093-3",),
    "ldl": ("18262-6", "2089-1"),
    "hdl": ("2085-9",),
    "triglycerides": ("2571-8",),
    "egfr": ("33914-3", "69405-9"),
    "weight": ("29463-7",),
    "body weight": ("29463-7",),
    "height": ("8302-2",),
    "bmi": ("39156-5",),
    "body mass index": ("39156-5",),
    "blood pressure": ("85354-9", "55284-4"),
    "heart rate": ("8867-4",),
    "pulse": ("8867-4",),
    "respiratory rate": ("9279-1",),
    "temperature": ("8310-5", "8331-1"),
    "oxygen saturation": ("2708-6", "59408-5"),
    "platelets": ("777-3",),
    "leukocytes": ("6690-2",),
    "white cell count": ("6690-2",),
}

#: The LOINC code of a body weight measurement (the dose-calculation guardrail needs one).
BODY_WEIGHT = "29463-7"
