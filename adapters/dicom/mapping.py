"""DICOM headers -> FHIR: ImagingStudy, Patient, Practitioner, ServiceRequest, Endpoint.

Pure functions, no I/O. The mapping follows the R4 ImagingStudy page
(http://hl7.org/fhir/R4/imagingstudy.html#notes): the Study Instance UID is an identifier with
system ``urn:dicom:uid`` and value ``urn:oid:<uid>``; modality codes are DICOM CID 29 in the
DCM code system; the SOP Class is a ``urn:ietf:rfc:3986`` Coding; an accession number is an
identifier of type ``ACSN`` (http://hl7.org/fhir/R4/imagingstudy.html#1.13.3.1).

A stored instance becomes one transaction Bundle (:func:`transaction_bundle`): the Patient is
a conditional create on its identifier (patient ID + issuer, PS3.3 C.7.1.1), referring
Practitioner and ServiceRequest (accession number) likewise, and the ImagingStudy is either a
conditional create on its Study Instance UID or a ``PUT`` of the merged study guarded by
``If-Match``, so an instance sent twice changes nothing and a study accumulates its series and
instances whatever order they arrive in.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pydicom.dataset import Dataset

DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
DICOM_UID_SYSTEM = "urn:dicom:uid"
RFC3986 = "urn:ietf:rfc:3986"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
ENDPOINT_CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"
#: Identifier systems fhirhub coins where DICOM carries no issuer.
PATIENT_ID_SYSTEM = "urn:fhirhub:dicom:patient-id"
ISSUER_SYSTEM_PREFIX = "urn:fhirhub:dicom:issuer:"
ACCESSION_SYSTEM = "urn:fhirhub:dicom:accession"
REFERRER_SYSTEM = "urn:fhirhub:dicom:referring-physician"
ENDPOINT_SYSTEM = "urn:fhirhub:dicom:endpoint"

#: An OID as DICOM writes UIDs (PS3.5 9.1: digits and dots, at most 64 characters).
UID_PATTERN = re.compile(r"^[0-9]+(\.[0-9]+)*$")

#: Body Part Examined (0018,0015) defined terms -> SNOMED CT (PS3.16 Annex L, CID 4031).
BODY_PARTS: dict[str, tuple[str, str]] = {
    "ABDOMEN": ("818981001", "Abdomen"),
    "BRAIN": ("12738006", "Brain"),
    "BREAST": ("76752008", "Breast"),
    "CHEST": ("51185008", "Thorax"),
    "CSPINE": ("122494005", "Cervical spine"),
    "TSPINE": ("122495006", "Thoracic spine"),
    "LSPINE": ("122496007", "Lumbar spine"),
    "SPINE": ("421060004", "Spine"),
    "HEAD": ("69536005", "Head"),
    "HEART": ("80891009", "Heart"),
    "KNEE": ("72696002", "Knee"),
    "NECK": ("45048000", "Neck"),
    "PELVIS": ("816092008", "Pelvis"),
    "SHOULDER": ("16982005", "Shoulder"),
    "HIP": ("24136001", "Hip"),
    "HAND": ("85562004", "Hand"),
    "FOOT": ("56459004", "Foot"),
    "LIVER": ("10200004", "Liver"),
    "WHOLEBODY": ("38266002", "Entire body"),
}


class MissingAttribute(ValueError):
    """A Type 1 attribute the mapping cannot do without (PS3.3 C.12.1, C.7.2.1, C.7.3.1)."""


@dataclass(frozen=True)
class InstanceHeaders:
    """The header attributes the FHIR mapping uses, read once from a dataset."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str = ""
    patient_id: str = ""
    patient_id_issuer: str = ""
    patient_name: str = ""
    birth_date: str = ""
    sex: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    accession_issuer: str = ""
    referring_physician: str = ""
    series_number: int | None = None
    series_description: str = ""
    series_date: str = ""
    series_time: str = ""
    body_part: str = ""
    instance_number: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    #: The tenant (Organization id) the instance was received for: the uploader's over
    #: STOW-RS, the calling AE's (``[plugin.dicom] tenants``) over C-STORE; "" for none.
    tenant: str = ""


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else ""
    return str(value).strip()


def _int(ds: Dataset, keyword: str) -> int | None:
    text = _text(ds, keyword)
    try:
        return int(float(text)) if text else None
    except ValueError:
        return None


def _issuer(ds: Dataset, keyword: str, sequence: str) -> str:
    """Issuer as (0010,0021) text or the Universal Entity ID of the issuer sequence."""
    text = _text(ds, keyword)
    if text:
        return text
    items = ds.get(sequence)
    if items:
        return _text(items[0], "UniversalEntityID") or _text(items[0], "LocalNamespaceEntityID")
    return ""


def headers_from_dataset(ds: Dataset) -> InstanceHeaders:
    """Read the mapped attributes; raise :class:`MissingAttribute` for a missing UID."""
    uids = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = _text(ds, keyword).rstrip("\x00")
        if not value:
            raise MissingAttribute(f"{keyword} is missing or empty")
        if not UID_PATTERN.match(value) or len(value) > 64:
            raise MissingAttribute(f"{keyword} {value!r} is not a valid UID")
        uids[keyword] = value
    accession_items = ds.get("IssuerOfAccessionNumberSequence")
    return InstanceHeaders(
        study_uid=uids["StudyInstanceUID"],
        series_uid=uids["SeriesInstanceUID"],
        sop_uid=uids["SOPInstanceUID"],
        sop_class_uid=uids["SOPClassUID"],
        modality=_text(ds, "Modality"),
        patient_id=_text(ds, "PatientID"),
        patient_id_issuer=_issuer(ds, "IssuerOfPatientID", "IssuerOfPatientIDQualifiersSequence"),
        patient_name=_text(ds, "PatientName"),
        birth_date=_text(ds, "PatientBirthDate"),
        sex=_text(ds, "PatientSex"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        accession_number=_text(ds, "AccessionNumber"),
        accession_issuer=(
            (_text(accession_items[0], "UniversalEntityID") or "") if accession_items else ""
        ),
        referring_physician=_text(ds, "ReferringPhysicianName"),
        series_number=_int(ds, "SeriesNumber"),
        series_description=_text(ds, "SeriesDescription"),
        series_date=_text(ds, "SeriesDate"),
        series_time=_text(ds, "SeriesTime"),
        body_part=_text(ds, "BodyPartExamined"),
        instance_number=_int(ds, "InstanceNumber"),
    )


# -- value conversions ------------------------------------------------------------------------


def fhir_date(da: str) -> str | None:
    """DICOM DA ``YYYYMMDD`` -> FHIR date (PS3.5 6.2)."""
    da = da.strip()
    if len(da) == 8 and da.isdigit() and da[:4] != "0000":
        return f"{da[:4]}-{da[4:6]}-{da[6:]}"
    return None


def fhir_datetime(da: str, tm: str) -> str | None:
    """DA + TM (``HHMMSS.FFFFFF``, parts optional) -> FHIR dateTime, no zone known.

    FHIR requires a zone once a time is present (datatypes.html#dateTime); DICOM has its own
    Timezone Offset From UTC (0008,0201), rarely sent, so a study time without it is kept at
    date precision rather than guessing a zone."""
    return fhir_date(da)


def fhir_gender(sex: str) -> str | None:
    return {"M": "male", "F": "female", "O": "other"}.get(sex.upper()) if sex else None


def human_name(pn: str) -> dict[str, Any] | None:
    """DICOM PN ``Family^Given^Middle^Prefix^Suffix`` (PS3.5 6.2.1) -> HumanName."""
    alphabetic = pn.split("=")[0].strip()
    if not alphabetic:
        return None
    parts = [p.strip() for p in alphabetic.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    name: dict[str, Any] = {"text": " ".join(p for p in (prefix, given, middle, family) if p)}
    if family:
        name["family"] = family
    givens = [g for g in (given, middle) if g]
    if givens:
        name["given"] = givens
    if prefix:
        name["prefix"] = [prefix]
    if suffix:
        name["suffix"] = [suffix]
    return name if name["text"] else None


def issuer_system(issuer: str, default: str) -> str:
    """An identifier system for a DICOM issuer: URIs and OIDs as such, names in a fhirhub URN."""
    if not issuer:
        return default
    if UID_PATTERN.match(issuer):
        return f"urn:oid:{issuer}"
    if re.match(r"^[a-z][a-z0-9+.-]*:", issuer, re.IGNORECASE):
        return issuer
    return ISSUER_SYSTEM_PREFIX + quote(issuer, safe="")


def patient_identifier(h: InstanceHeaders) -> dict[str, str]:
    """Patient ID + issuer. Without a Patient ID the study stands for its own patient (so
    anonymous studies are never merged into one shared Patient)."""
    if h.patient_id:
        return {
            "system": issuer_system(h.patient_id_issuer, PATIENT_ID_SYSTEM),
            "value": h.patient_id,
        }
    return {"system": f"{PATIENT_ID_SYSTEM}:study", "value": h.study_uid}


def study_identifier(study_uid: str) -> dict[str, str]:
    return {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}


def accession_identifier(h: InstanceHeaders) -> dict[str, Any]:
    return {
        "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
        "system": issuer_system(h.accession_issuer, ACCESSION_SYSTEM),
        "value": h.accession_number,
    }


def token(identifier: dict[str, Any]) -> str:
    """``system|value`` for a search, with the characters a query string needs escaped."""
    return quote(f"{identifier['system']}|{identifier['value']}", safe=":/|")


# -- resources --------------------------------------------------------------------------------


def patient_resource(h: InstanceHeaders) -> dict[str, Any]:
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": [patient_identifier(h)]}
    name = human_name(h.patient_name)
    if name:
        patient["name"] = [name]
    gender = fhir_gender(h.sex)
    if gender:
        patient["gender"] = gender
    birth = fhir_date(h.birth_date)
    if birth:
        patient["birthDate"] = birth
    return patient


def practitioner_resource(h: InstanceHeaders) -> dict[str, Any] | None:
    name = human_name(h.referring_physician)
    if name is None:
        return None
    return {
        "resourceType": "Practitioner",
        "identifier": [{"system": REFERRER_SYSTEM, "value": h.referring_physician.split("=")[0]}],
        "name": [name],
    }


def service_request_resource(
    h: InstanceHeaders, patient_ref: str, practitioner_ref: str | None
) -> dict[str, Any] | None:
    """The order the study fulfils, known by its accession number (the RIS's order id)."""
    if not h.accession_number:
        return None
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "identifier": [accession_identifier(h)],
        "status": "active",
        "intent": "order",
        "subject": {"reference": patient_ref},
    }
    if h.study_description:
        request["code"] = {"text": h.study_description}
    if practitioner_ref:
        request["requester"] = {"reference": practitioner_ref}
    return request


def endpoint_resource(address: str) -> dict[str, Any]:
    """The DICOMweb endpoint ImagingStudy.endpoint points at (endpoint-connection-type
    ``dicom-wado-rs``)."""
    return {
        "resourceType": "Endpoint",
        "identifier": [{"system": ENDPOINT_SYSTEM, "value": address}],
        "status": "active",
        "name": "fhirhub DICOMweb",
        "connectionType": {"system": ENDPOINT_CONNECTION, "code": "dicom-wado-rs"},
        "payloadType": [{"text": "DICOM"}],
        "payloadMimeType": ["application/dicom"],
        "address": address,
    }


def _modality_coding(modality: str) -> dict[str, str]:
    return {"system": DCM, "code": modality or "OT"}


def _body_site(body_part: str) -> dict[str, str] | None:
    if not body_part:
        return None
    known = BODY_PARTS.get(body_part.upper().replace(" ", ""))
    if known:
        return {"system": SNOMED, "code": known[0], "display": known[1]}
    return {"display": body_part}


def new_series(h: InstanceHeaders) -> dict[str, Any]:
    series: dict[str, Any] = {"uid": h.series_uid}
    if h.series_number is not None:
        series["number"] = h.series_number
    series["modality"] = _modality_coding(h.modality)
    if h.series_description:
        series["description"] = h.series_description
    body_site = _body_site(h.body_part)
    if body_site:
        series["bodySite"] = body_site
    started = fhir_datetime(h.series_date, h.series_time)
    if started:
        series["started"] = started
    series["instance"] = []
    return series


def new_instance(h: InstanceHeaders) -> dict[str, Any]:
    instance: dict[str, Any] = {
        "uid": h.sop_uid,
        "sopClass": {"system": RFC3986, "code": f"urn:oid:{h.sop_class_uid}"},
    }
    if h.instance_number is not None:
        instance["number"] = h.instance_number
    return instance


def new_imaging_study(
    h: InstanceHeaders,
    patient_ref: str,
    *,
    endpoint_ref: str | None = None,
    referrer_ref: str | None = None,
    service_request_ref: str | None = None,
) -> dict[str, Any]:
    study: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": [study_identifier(h.study_uid)],
        "status": "available",
        "subject": {"reference": patient_ref},
    }
    if h.accession_number:
        study["identifier"].append(accession_identifier(h))
    started = fhir_datetime(h.study_date, h.study_time)
    if started:
        study["started"] = started
    if service_request_ref:
        study["basedOn"] = [{"reference": service_request_ref}]
    if referrer_ref:
        study["referrer"] = {"reference": referrer_ref}
    if endpoint_ref:
        study["endpoint"] = [{"reference": endpoint_ref}]
    if h.study_description:
        study["description"] = h.study_description
    study["series"] = []
    return study


def _sort_key(item: dict[str, Any]) -> tuple[int, str]:
    number = item.get("number")
    return (number if isinstance(number, int) else 1 << 31, item.get("uid", ""))


def merge_instance(study: dict[str, Any], h: InstanceHeaders) -> bool:
    """Add the instance (and its series) to ``study`` in place; recompute the counts and the
    study-level modality list. Returns False when the study already held it unchanged, which
    is what makes re-sending an instance idempotent."""
    series_list: list[dict[str, Any]] = study.setdefault("series", [])
    series = next((s for s in series_list if s.get("uid") == h.series_uid), None)
    if series is None:
        series = new_series(h)
        series_list.append(series)
        series_list.sort(key=_sort_key)
    instances: list[dict[str, Any]] = series.setdefault("instance", [])
    instance = new_instance(h)
    existing = next((i for i in instances if i.get("uid") == h.sop_uid), None)
    if existing is not None:
        if existing == instance:
            return False
        instances[instances.index(existing)] = instance
    else:
        instances.append(instance)
        instances.sort(key=_sort_key)
    refresh_counts(study)
    return True


def refresh_counts(study: dict[str, Any]) -> None:
    """numberOfSeries / numberOfInstances and the modality list follow from the series."""
    series_list = study.get("series", [])
    modalities: list[dict[str, str]] = []
    total = 0
    for series in series_list:
        count = len(series.get("instance", []))
        series["numberOfInstances"] = count
        total += count
        modality = series.get("modality")
        if modality and modality not in modalities:
            modalities.append(modality)
    study["numberOfSeries"] = len(series_list)
    study["numberOfInstances"] = total
    if modalities:
        study["modality"] = modalities


def _has_identifier(resource: dict[str, Any], identifier: dict[str, Any]) -> bool:
    return any(
        i.get("system") == identifier["system"] and i.get("value") == identifier["value"]
        for i in resource.get("identifier", [])
    )


@dataclass(frozen=True)
class CurrentStudy:
    """The stored ImagingStudy an instance is merged into (id, version for If-Match, body)."""

    resource_id: str
    version_id: int
    resource: dict[str, Any]


def transaction_bundle(
    instances: InstanceHeaders | Sequence[InstanceHeaders],
    current: CurrentStudy | None,
    endpoint_address: str | None,
    *,
    conditional: bool = True,
) -> dict[str, Any] | None:
    """The transaction that records instances of one study, or None when all are recorded.

    With no current study: conditional creates of Patient, Practitioner, ServiceRequest and
    Endpoint (``ifNoneExist`` on their identifiers, linked by ``urn:uuid`` fullUrls) and a
    conditional ``PUT ImagingStudy?identifier=...``. With a current study: the merged study is
    ``PUT`` by id with ``If-Match`` on the version it was merged from (a concurrent writer
    makes it fail with 412 and the caller merges again), plus a ServiceRequest for each
    accession number the study does not have yet. Several instances of one study make one
    Bundle (the recorder batches what arrives while the previous transaction commits).
    ``conditional=False`` creates a new study with a plain ``POST`` instead (where the
    conditional ``PUT`` could match a study the writer must not replace).
    """
    batch = [instances] if isinstance(instances, InstanceHeaders) else list(instances)
    if not batch:
        return None
    first = batch[0]
    if any(h.study_uid != first.study_uid for h in batch):
        raise ValueError("transaction_bundle: all instances must belong to one study")
    entries: list[dict[str, Any]] = []
    keys = iter(f"urn:uuid:00000000-0000-4000-8000-{n:012d}" for n in range(1, 1 << 20))

    def conditional_create(resource: dict[str, Any], scope: str = "") -> str:
        url = next(keys)
        criteria = f"identifier={token(resource['identifier'][0])}{scope}"
        entries.append(
            {
                "fullUrl": url,
                "resource": resource,
                "request": {
                    "method": "POST",
                    "url": resource["resourceType"],
                    "ifNoneExist": criteria,
                },
            }
        )
        return url

    # An accession number is unique only within its issuer; without one, two patients' orders
    # may share a number (pydicom's own test files do), so the match is scoped to the patient.
    order_scope = f"&patient.identifier={token(patient_identifier(first))}"

    def add_orders(study: dict[str, Any], referrer: str | None) -> bool:
        added = False
        subject = study["subject"]["reference"]
        for h in batch:
            if h.accession_number and not _has_identifier(study, accession_identifier(h)):
                request = service_request_resource(h, subject, referrer)
                assert request is not None
                ref = conditional_create(request, order_scope)
                study.setdefault("identifier", []).append(accession_identifier(h))
                study.setdefault("basedOn", []).append({"reference": ref})
                added = True
        return added

    if current is None:
        patient_ref = conditional_create(patient_resource(first))
        practitioner = next((p for p in map(practitioner_resource, batch) if p), None)
        referrer_ref = conditional_create(practitioner) if practitioner else None
        endpoint_ref = (
            conditional_create(endpoint_resource(endpoint_address)) if endpoint_address else None
        )
        study = new_imaging_study(
            first, patient_ref, endpoint_ref=endpoint_ref, referrer_ref=referrer_ref
        )
        study["identifier"] = [study_identifier(first.study_uid)]
        add_orders(study, referrer_ref)
        for h in batch:
            merge_instance(study, h)
        study_url = next(keys)
        criteria = f"ImagingStudy?identifier={token(study_identifier(first.study_uid))}"
        request = (
            {"method": "PUT", "url": criteria}
            if conditional
            else {
                "method": "POST",
                "url": "ImagingStudy",
            }
        )
        entries.append({"fullUrl": study_url, "resource": study, "request": request})
        entries.append(provenance_entry(batch, [e["fullUrl"] for e in entries], "CREATE"))
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}

    study = _copy(current.resource)
    meta = study.pop("meta", None)
    if isinstance(meta, dict) and meta.get("security"):
        study["meta"] = {"security": meta["security"]}  # the tenant label stays with the study
    changed = False
    for h in batch:
        changed = merge_instance(study, h) or changed
    changed = add_orders(study, study.get("referrer", {}).get("reference")) or changed
    if not changed:
        return None
    entries.append(
        {
            "resource": study,
            "request": {
                "method": "PUT",
                "url": f"ImagingStudy/{current.resource_id}",
                "ifMatch": f'W/"{current.version_id}"',
            },
        }
    )
    targets = [e["fullUrl"] for e in entries if "fullUrl" in e]
    entries.append(
        provenance_entry(batch, [*targets, f"ImagingStudy/{current.resource_id}"], "UPDATE")
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def provenance_entry(
    batch: Sequence[InstanceHeaders], targets: list[str], activity: str
) -> dict[str, Any]:
    """The Provenance of one recorder transaction: what it wrote (``target``), when, by this
    DICOM node, from which SOP instances (``entity.what`` by SOP Instance UID), so every
    ImagingStudy version traces back to the instances that made it."""
    from datetime import UTC, datetime

    recorded = datetime.now(tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "resource": {
            "resourceType": "Provenance",
            "target": [{"reference": target} for target in targets],
            "recorded": recorded,
            "activity": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                        "code": activity,
                    }
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                "code": "assembler",
                            }
                        ]
                    },
                    "who": {"display": "fhirhub DICOM node"},
                }
            ],
            "entity": [
                {
                    "role": "source",
                    "what": {
                        "identifier": {"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{h.sop_uid}"},
                        "display": f"SOP Instance {h.sop_uid}",
                    },
                }
                for h in batch
            ],
        },
        "request": {"method": "POST", "url": "Provenance"},
    }


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
