"""The OSCAR model: one typed record per OSCAR row, whichever way it was read.

Every source (the database replica, the OAuth REST API, the SOAP services, the demo fixture)
produces these records with OSCAR's own column names and raw values (strings as OSCAR keeps
them, zero dates included), so the mapper sees one shape and never knows where a record came
from. ``raw`` keeps the record as it was received, for a dead letter.

Dates stay unparsed here: OSCAR's zero dates (``0000-00-00``, ``0001-01-01``) and split birth
dates are the mapper's business (:mod:`fhirhub.adapters.oscar.dates`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import date, datetime, time, timedelta
from typing import Any, ClassVar, TypeVar

#: A date, time or datetime as a source gave it: a Python value, a string, or None.
Temporal = date | datetime | time | timedelta | str | None

_R = TypeVar("_R", bound="OscarRecord")


@dataclass(slots=True)
class OscarRecord:
    """Base of every record: ``table`` names OSCAR's table, ``key`` the row's primary key."""

    table: ClassVar[str] = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False, kw_only=True)

    @property
    def key(self) -> str:
        raise NotImplementedError

    @classmethod
    def from_row(cls: type[_R], row: Mapping[str, Any], **extra: Any) -> _R:
        """Build from a row keyed by OSCAR's column names (case-insensitive); unknown columns
        are ignored, missing ones are None."""
        lowered = {str(k).lower(): v for k, v in row.items()}
        values = {
            f.name: lowered.get(f.name.lower())
            for f in fields(cls)
            if f.name != "raw" and f.name.lower() in lowered
        }
        values.update(extra)
        return cls(**values, raw=_jsonable(row))


def _jsonable(row: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, date | datetime | time):
            out[str(k)] = v.isoformat()
        elif isinstance(v, timedelta):
            out[str(k)] = str(v)
        elif isinstance(v, bytes | bytearray):
            out[str(k)] = bytes(v).decode("utf-8", "replace")
        elif isinstance(v, float | int | str | bool) or v is None:
            out[str(k)] = v
        else:
            out[str(k)] = str(v)
    return out


@dataclass(slots=True)
class Provider(OscarRecord):
    table: ClassVar[str] = "provider"
    provider_no: str = ""
    last_name: str | None = None
    first_name: str | None = None
    provider_type: str | None = None
    specialty: str | None = None
    sex: str | None = None
    dob: Temporal = None
    address: str | None = None
    phone: str | None = None
    work_phone: str | None = None
    email: str | None = None
    ohip_no: str | None = None
    billing_no: str | None = None
    practitionerNo: str | None = None
    practitionerNoType: str | None = None
    status: str | None = None
    title: str | None = None
    lastUpdateDate: Temporal = None

    @property
    def key(self) -> str:
        return str(self.provider_no)


@dataclass(slots=True)
class Demographic(OscarRecord):
    table: ClassVar[str] = "demographic"
    demographic_no: int = 0
    title: str | None = None
    last_name: str | None = None
    first_name: str | None = None
    middleNames: str | None = None
    alias: str | None = None
    address: str | None = None
    city: str | None = None
    province: str | None = None
    postal: str | None = None
    phone: str | None = None
    phone2: str | None = None
    email: str | None = None
    year_of_birth: str | None = None
    month_of_birth: str | None = None
    date_of_birth: str | None = None
    hin: str | None = None
    ver: str | None = None
    hc_type: str | None = None
    hc_renew_date: Temporal = None
    roster_status: str | None = None
    roster_date: Temporal = None
    patient_status: str | None = None
    patient_status_date: Temporal = None
    date_joined: Temporal = None
    chart_no: str | None = None
    official_lang: str | None = None
    spoken_lang: str | None = None
    provider_no: str | None = None
    sex: str | None = None
    lastUpdateDate: Temporal = None
    #: ``demographicExt`` rows of this patient: key_val -> value (the latest per key).
    ext: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.demographic_no)


@dataclass(slots=True)
class Allergy(OscarRecord):
    table: ClassVar[str] = "allergies"
    allergyid: int = 0
    demographic_no: int = 0
    entry_date: Temporal = None
    DESCRIPTION: str | None = None
    TYPECODE: int | str | None = None
    reaction: str | None = None
    drugref_id: str | None = None
    regional_identifier: str | None = None
    archived: str | int | None = None
    start_date: Temporal = None
    age_of_onset: str | None = None
    severity_of_reaction: str | None = None
    onset_of_reaction: str | None = None
    life_stage: str | None = None
    providerNo: str | None = None
    lastUpdateDate: Temporal = None

    @property
    def key(self) -> str:
        return str(self.allergyid)


@dataclass(slots=True)
class Drug(OscarRecord):
    table: ClassVar[str] = "drugs"
    drugid: int = 0
    provider_no: str | None = None
    demographic_no: int = 0
    rx_date: Temporal = None
    end_date: Temporal = None
    written_date: Temporal = None
    BN: str | None = None
    GN: str | None = None
    customName: str | None = None
    ATC: str | None = None
    regional_identifier: str | None = None
    takemin: float | str | None = None
    takemax: float | str | None = None
    freqcode: str | None = None
    duration: str | None = None
    durunit: str | None = None
    quantity: str | None = None
    repeat: int | str | None = None
    nosubs: int | str | None = None
    prn: int | str | None = None
    special: str | None = None
    special_instruction: str | None = None
    archived: int | str | None = None
    archived_reason: str | None = None
    archived_date: Temporal = None
    unit: str | None = None
    method: str | None = None
    route: str | None = None
    drug_form: str | None = None
    dosage: str | None = None
    long_term: int | str | None = None
    short_term: int | str | None = None
    past_med: int | str | None = None
    lastUpdateDate: Temporal = None

    @property
    def key(self) -> str:
        return str(self.drugid)


@dataclass(slots=True)
class MeasurementType(OscarRecord):
    table: ClassVar[str] = "measurementType"
    type: str = ""
    typeDisplayName: str | None = None
    typeDescription: str | None = None
    measuringInstruction: str | None = None

    @property
    def key(self) -> str:
        return self.type


@dataclass(slots=True)
class Measurement(OscarRecord):
    table: ClassVar[str] = "measurements"
    id: int = 0
    type: str = ""
    demographicNo: int = 0
    providerNo: str | None = None
    dataField: str | None = None
    measuringInstruction: str | None = None
    comments: str | None = None
    dateObserved: Temporal = None
    dateEntered: Temporal = None
    appointmentNo: int | None = None
    #: ``measurementsExt`` rows: keyval -> val (``identifier``/``loinc``, ``unit``, ``range``...).
    ext: dict[str, str] = field(default_factory=dict)
    #: The ``measurementType`` row of ``type`` when known (display name, instruction).
    type_display: str | None = None

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass(slots=True)
class DeletedMeasurement(OscarRecord):
    """A row of ``measurementsDeleted``: OSCAR moves a deleted measurement there."""

    table: ClassVar[str] = "measurementsDeleted"
    id: int = 0
    originalId: int = 0
    demographicNo: int = 0
    dateDeleted: Temporal = None

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass(slots=True)
class Appointment(OscarRecord):
    table: ClassVar[str] = "appointment"
    appointment_no: int = 0
    provider_no: str | None = None
    appointment_date: Temporal = None
    start_time: Temporal = None
    end_time: Temporal = None
    name: str | None = None
    demographic_no: int | None = None
    notes: str | None = None
    reason: str | None = None
    location: str | None = None
    type: str | None = None
    status: str | None = None
    createdatetime: Temporal = None
    updatedatetime: Temporal = None
    remarks: str | None = None
    urgency: str | None = None

    @property
    def key(self) -> str:
        return str(self.appointment_no)


@dataclass(slots=True)
class DeletedAppointment(OscarRecord):
    """An ``appointmentArchive`` row whose appointment no longer exists: OSCAR archives a
    copy before deleting the row."""

    table: ClassVar[str] = "appointmentArchive"
    id: int = 0
    appointment_no: int = 0
    demographic_no: int | None = None
    updatedatetime: Temporal = None

    @property
    def key(self) -> str:
        return str(self.id)


@dataclass(slots=True)
class NoteIssue:
    """An issue a note is filed under (``casemgmt_issue`` joined with ``issue``)."""

    code: str
    description: str = ""
    resolved: bool = False
    certain: bool = False
    major: bool = False
    acute: bool = False


@dataclass(slots=True)
class Note(OscarRecord):
    """One revision of a ``casemgmt_note``: a revision is a new row with the same ``uuid``;
    the highest ``note_id`` is the current text."""

    table: ClassVar[str] = "casemgmt_note"
    note_id: int = 0
    uuid: str | None = None
    demographic_no: int = 0
    provider_no: str | None = None
    signing_provider_no: str | None = None
    note: str | None = None
    signed: int | str | None = None
    archived: int | str | None = None
    locked: str | None = None
    encounter_type: str | None = None
    observation_date: Temporal = None
    update_date: Temporal = None
    appointmentNo: int | None = None
    issues: list[NoteIssue] = field(default_factory=list)

    @property
    def key(self) -> str:
        return str(self.note_id)

    @property
    def document_key(self) -> str:
        """What identifies the note across its revisions (its uuid; the note_id without one)."""
        return self.uuid or f"note-{self.note_id}"


#: Records by OSCAR table name (what the sync's streams read).
RECORD_TYPES: dict[str, type[OscarRecord]] = {
    cls.table: cls
    for cls in (
        Provider,
        Demographic,
        Allergy,
        Drug,
        Measurement,
        DeletedMeasurement,
        Appointment,
        DeletedAppointment,
        Note,
    )
}
