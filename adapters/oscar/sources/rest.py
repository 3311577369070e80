"""OSCAR's OAuth 1.0a REST API (``/ws/services/...``), signed with HMAC-SHA1 by ``oauthlib``.

The REST resources read a patient at a time and have no "updated after" query, so a REST sync
walks the patient list: each page is the records of the next few patients, the cursor the last
demographic_no done (a run that stops resumes there), and a finished pass starts over next
time; the store keeps no version for what did not change. Deleted measurements and
appointments are not visible through REST (use the database or the SOAP source for those).

OSCAR's JSON needs tolerance: a list of one item may come as the bare object, lists come
wrapped (``{"content": [...]}``, ``{"drug": ...}``), dates as epoch milliseconds or strings.
Timeouts, 5xx answers and truncated JSON are retried with back-off, then reported.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx
import orjson
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, Client

from fhirhub.adapters.oscar.model import (
    Allergy,
    Appointment,
    Demographic,
    Drug,
    Measurement,
    Note,
    NoteIssue,
    OscarRecord,
    Provider,
)
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import Cursor, Page, SourceError

SERVICES = "/ws/services"
PATIENTS_PER_PAGE = 10
_WRAPPERS = (
    "content",
    "list",
    "List",
    "items",
    "Item",
    "item",
    "drug",
    "drugs",
    "allergies",
    "appointments",
    "notelist",
    "providers",
)


def as_list(value: Any, *keys: str) -> list[dict[str, Any]]:
    """OSCAR's list in any of its shapes: a list, a bare object for one item, a wrapper
    object (``{"content": ...}``) around either, or nothing."""
    if value is None or value == "":
        return []
    if isinstance(value, dict):
        for key in (*keys, *_WRAPPERS):
            if key in value:
                return as_list(value[key])
        return [value]
    if isinstance(value, list):
        out: list[dict[str, Any]] = []
        for item in value:
            out.extend(
                as_list(item)
                if isinstance(item, list)
                else [item]
                if isinstance(item, dict)
                else []
            )
        return out
    return []


class OscarRestClient:
    """Signed requests to one OSCAR, with retries."""

    def __init__(self, settings: OscarSettings, *, attempts: int = 3) -> None:
        if not settings.url:
            raise ValueError("[plugin.oscar] url is needed for the REST API")
        self.base = settings.url.rstrip("/")
        self.oauth = Client(
            settings.consumer_key,
            client_secret=settings.consumer_secret,
            resource_owner_key=settings.token or None,
            resource_owner_secret=settings.token_secret or None,
            signature_method=SIGNATURE_HMAC_SHA1,
        )
        self.http = httpx.Client(timeout=settings.timeout_s)
        self.attempts = attempts

    def close(self) -> None:
        self.http.close()

    def call(
        self, method: str, path: str, *, params: dict[str, Any] | None = None, body: Any = None
    ) -> Any:
        """The parsed JSON of ``method path`` (raises :class:`SourceError` after retries)."""
        url = f"{self.base}{SERVICES}{path}"
        if params:
            url += "?" + httpx.QueryParams({k: str(v) for k, v in params.items()}).__str__()
        payload = orjson.dumps(body) if body is not None else None
        last = "no attempt"
        for attempt in range(self.attempts):
            if attempt:
                time.sleep(min(4.0, 0.25 * 2**attempt))
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            # JSON bodies are not part of an OAuth 1.0a signature (RFC 5849 §3.4.1.3.1).
            signed_url, signed_headers, _ = self.oauth.sign(url, method, None, headers)
            try:
                response = self.http.request(
                    method, signed_url, headers=signed_headers, content=payload
                )
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code >= 500:
                last = f"HTTP {response.status_code} from {path}"
                continue
            if response.status_code in (401, 403):
                raise SourceError(
                    f"OSCAR refused {path}: HTTP {response.status_code} (check the OAuth consumer and token)"
                )
            if response.status_code >= 400:
                raise SourceError(
                    f"OSCAR answered {path} with HTTP {response.status_code}: {response.text[:200]}"
                )
            if not response.content.strip():
                return None
            try:
                return orjson.loads(response.content)
            except orjson.JSONDecodeError as exc:
                last = f"malformed JSON from {path}: {exc}"
                continue
        raise SourceError(f"{method} {path} failed after {self.attempts} attempts: {last}")


def _address(data: dict[str, Any]) -> dict[str, Any]:
    address = data.get("address") or {}
    if not isinstance(address, dict):
        return {}
    return {
        "address": address.get("address"),
        "city": address.get("city"),
        "province": address.get("province"),
        "postal": address.get("postal"),
    }


def demographic(data: dict[str, Any]) -> Demographic:
    """DemographicTo1 -> the model (``dobYear``/``dobMonth``/``dobDay`` are the split birth date)."""
    row = {
        "demographic_no": data.get("demographicNo"),
        "title": data.get("title"),
        "last_name": data.get("lastName"),
        "first_name": data.get("firstName"),
        "alias": data.get("alias"),
        **_address(data),
        "phone": data.get("phone"),
        "phone2": data.get("alternativePhone"),
        "email": data.get("email"),
        "year_of_birth": data.get("dobYear"),
        "month_of_birth": data.get("dobMonth"),
        "date_of_birth": data.get("dobDay"),
        "hin": data.get("hin"),
        "ver": data.get("ver"),
        "hc_type": data.get("hcType"),
        "hc_renew_date": data.get("hcRenewDate"),
        "roster_status": data.get("rosterStatus"),
        "roster_date": data.get("rosterDate"),
        "patient_status": data.get("patientStatus"),
        "patient_status_date": data.get("patientStatusDate"),
        "date_joined": data.get("dateJoined"),
        "chart_no": data.get("chartNo"),
        "official_lang": data.get("officialLanguage"),
        "spoken_lang": data.get("spokenLanguage"),
        "provider_no": data.get("providerNo"),
        "sex": data.get("sex"),
        "lastUpdateDate": data.get("lastUpdateDate"),
    }
    ext = {
        str(e.get("key")): str(e.get("value")) for e in as_list(data.get("extras")) if e.get("key")
    }
    record = Demographic.from_row(row, ext=ext)
    record.raw = data
    return record


def provider(data: dict[str, Any]) -> Provider:
    sex = data.get("sex")
    row = {
        "provider_no": data.get("providerNo"),
        "last_name": data.get("lastName"),
        "first_name": data.get("firstName"),
        "provider_type": data.get("providerType"),
        "specialty": data.get("specialty"),
        "sex": sex.get("name", "")[:1] if isinstance(sex, dict) else sex,
        "dob": data.get("dob"),
        "phone": data.get("phone"),
        "work_phone": data.get("workPhone"),
        "email": data.get("email"),
        "ohip_no": data.get("ohipNo"),
        "billing_no": data.get("billingNo"),
        "practitionerNo": data.get("practitionerNo"),
        "practitionerNoType": data.get("practitionerNoType"),
        "status": "1" if data.get("enabled", True) else "0",
        "title": data.get("title"),
        "lastUpdateDate": data.get("lastUpdateDate"),
    }
    record = Provider.from_row(row)
    record.raw = data
    return record


def allergy(data: dict[str, Any]) -> Allergy:
    row = {
        "allergyid": data.get("id"),
        "demographic_no": data.get("demographicNo"),
        "entry_date": data.get("entryDate"),
        "DESCRIPTION": data.get("description"),
        "TYPECODE": data.get("typeCode"),
        "reaction": data.get("reaction"),
        "regional_identifier": data.get("regionalIdentifier"),
        "archived": data.get("archived"),
        "start_date": data.get("startDate"),
        "age_of_onset": data.get("ageOfOnset"),
        "severity_of_reaction": data.get("severityOfReaction"),
        "onset_of_reaction": data.get("onsetOfReaction"),
        "life_stage": data.get("lifeStage"),
        "providerNo": data.get("providerNo"),
        "lastUpdateDate": data.get("lastUpdateDate"),
    }
    record = Allergy.from_row(row)
    record.raw = data
    return record


def drug(data: dict[str, Any]) -> Drug:
    row = {
        "drugid": data.get("drugId"),
        "provider_no": data.get("providerNo"),
        "demographic_no": data.get("demographicNo"),
        "rx_date": data.get("rxDate"),
        "end_date": data.get("endDate"),
        "written_date": data.get("writtenDate"),
        "BN": data.get("brandName"),
        "GN": data.get("genericName"),
        "customName": data.get("customName"),
        "ATC": data.get("atc"),
        "regional_identifier": data.get("regionalIdentifier"),
        "takemin": data.get("takeMin"),
        "takemax": data.get("takeMax"),
        "freqcode": data.get("frequency"),
        "duration": data.get("duration"),
        "durunit": data.get("durationUnit"),
        "quantity": data.get("quantity"),
        "repeat": data.get("repeats"),
        "nosubs": data.get("noSubstitutions"),
        "prn": data.get("prn"),
        "special": data.get("instructions"),
        "special_instruction": data.get("additionalInstructions"),
        "archived": data.get("archived"),
        "archived_reason": data.get("archivedReason"),
        "archived_date": data.get("archivedDate"),
        "unit": data.get("strengthUnit") or data.get("unit"),
        "method": data.get("method"),
        "route": data.get("route"),
        "drug_form": data.get("form"),
        "long_term": data.get("longTerm"),
    }
    record = Drug.from_row(row)
    record.raw = data
    return record


def measurement(data: dict[str, Any]) -> Measurement:
    row = {
        "id": data.get("id"),
        "type": data.get("type"),
        "demographicNo": data.get("demographicId") or data.get("demographicNo"),
        "providerNo": data.get("providerNo"),
        "dataField": data.get("dataField"),
        "measuringInstruction": data.get("measuringInstruction"),
        "comments": data.get("comments"),
        "dateObserved": data.get("dateObserved"),
        "dateEntered": data.get("createDate") or data.get("dateEntered"),
        "appointmentNo": data.get("appointmentNo") or None,
    }
    record = Measurement.from_row(row)
    record.raw = data
    return record


def appointment(data: dict[str, Any]) -> Appointment:
    row = {
        "appointment_no": data.get("id"),
        "provider_no": data.get("providerNo"),
        "appointment_date": data.get("appointmentDate"),
        "start_time": data.get("startTime"),
        "end_time": data.get("endTime"),
        "name": data.get("name"),
        "demographic_no": data.get("demographicNo"),
        "notes": data.get("notes"),
        "reason": data.get("reason"),
        "location": data.get("location"),
        "type": data.get("type"),
        "status": data.get("status"),
        "createdatetime": data.get("createDateTime"),
        "updatedatetime": data.get("updateDateTime"),
        "remarks": data.get("remarks"),
        "urgency": data.get("urgency"),
    }
    record = Appointment.from_row(row)
    record.raw = data
    return record


def note(data: dict[str, Any], demographic_no: int) -> Note:
    issues = []
    for assigned in as_list(data.get("assignedIssues")):
        issue = assigned.get("issue") or {}
        if issue.get("code"):
            issues.append(
                NoteIssue(
                    str(issue["code"]),
                    str(issue.get("description") or ""),
                    bool(assigned.get("resolved")),
                    bool(assigned.get("certain")),
                    bool(assigned.get("major")),
                    bool(assigned.get("acute")),
                )
            )
    row = {
        "note_id": data.get("noteId"),
        "uuid": data.get("uuid"),
        "demographic_no": demographic_no,
        "provider_no": data.get("providerNo"),
        "note": data.get("note"),
        "signed": data.get("isSigned"),
        "archived": data.get("archived"),
        "encounter_type": data.get("encounterType"),
        "observation_date": data.get("observationDate"),
        "update_date": data.get("updateDate"),
        "appointmentNo": data.get("appointmentNo") or None,
        "signing_provider_no": data.get("providerNo") if data.get("isSigned") else "",
    }
    record = Note.from_row(row, issues=issues)
    record.raw = data
    return record


class RestSource:
    kind = "rest"
    streams: tuple[str, ...] = (
        "provider",
        "demographic",
        "allergies",
        "drugs",
        "measurements",
        "appointment",
        "casemgmt_note",
    )

    def __init__(self, settings: OscarSettings, client: OscarRestClient | None = None) -> None:
        self.client = client or OscarRestClient(settings)
        self._patients: list[int] | None = None

    def close(self) -> None:
        self.client.close()

    def patients(self, refresh: bool = False) -> list[int]:
        if self._patients is None or refresh:
            numbers: list[int] = []
            for data in self._all_demographics():
                if data.get("demographicNo") is not None:
                    numbers.append(int(data["demographicNo"]))
            self._patients = sorted(set(numbers))
        return self._patients

    def _all_demographics(self) -> Iterable[dict[str, Any]]:
        offset, limit = 0, 100
        while True:
            answer = self.client.call(
                "GET", "/demographics", params={"offset": offset, "limit": limit}
            )
            items = as_list(answer)
            yield from items
            if len(items) < limit:
                return
            offset += limit

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        if stream == "provider":
            answer = self.client.call("GET", "/providerService/providers_json")
            records: list[OscarRecord] = [
                provider(p) for p in as_list(answer) if p.get("providerNo")
            ]
            return Page(records, Cursor(), True)
        if stream == "demographic":
            offset = int(after.key or 0)
            answer = self.client.call(
                "GET", "/demographics", params={"offset": offset, "limit": limit}
            )
            items = as_list(answer)
            done = len(items) < limit
            return Page(
                [demographic(d) for d in items],
                Cursor() if done else Cursor("", str(offset + len(items))),
                done,
            )
        numbers = self.patients(refresh=after.is_start)
        last = int(after.key or 0)
        batch = [n for n in numbers if n > last][:PATIENTS_PER_PAGE]
        out: list[OscarRecord] = []
        for number in batch:
            out.extend(self._patient_records(stream, number))
        done = not batch or batch[-1] == numbers[-1]
        return Page(out, Cursor() if done else Cursor("", str(batch[-1])), done)

    def _patient_records(self, stream: str, number: int) -> list[OscarRecord]:
        client = self.client
        if stream == "allergies":
            return [
                allergy(a)
                for a in as_list(
                    client.call("GET", "/allergies/active", params={"demographicNo": number}),
                    "allergies",
                )
            ]
        if stream == "drugs":
            return [
                drug(d)
                for d in as_list(client.call("GET", f"/rx/drugs/all/{number}"), "content", "drug")
            ]
        if stream == "measurements":
            answer = client.call("POST", f"/measurements/{number}", body={"types": []}) or {}
            grouped = answer.get("measurementMap", {}) if isinstance(answer, dict) else {}
            return [measurement(m) for values in grouped.values() for m in as_list(values)]
        if stream == "appointment":
            answer = client.call("POST", f"/schedule/{number}/appointmentHistory", body={})
            return [appointment(a) for a in as_list(answer, "appointments")]
        if stream == "casemgmt_note":
            answer = client.call(
                "POST", f"/notes/{number}/all", params={"numToReturn": 1000, "offset": 0}, body={}
            )
            return [note(n, number) for n in as_list(answer, "notelist")]
        raise SourceError(f"the REST API has no {stream} stream")
