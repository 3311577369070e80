"""OSCAR's SOAP services (``/ws/<Name>Service``) with ``zeep``: the incremental reads.

OSCAR's SOAP API has what its REST API lacks, "updated after" queries
(``getActiveDemographicsAfter``, ``getAllergiesUpdatedAfterDate``,
``getMeasurementsCreatedAfterDate``, ``getAppointmentsUpdatedAfterDate``), and the only way to
add a measurement (``addMeasurement``). Authentication: ``LoginService.login`` answers a
security id and a token, sent as a WS-Security UsernameToken (``PasswordText``) on every other
call. The token is derived from OSCAR's start time, so after OSCAR restarts it is refused: the
client logs in again once and repeats the call.

These queries take a time, not a key, and OSCAR's services differ in how they use it
(``getAllergiesUpdatedAfterDate`` is inclusive, the three others exclusive; OSCAR keeps
seconds). A page therefore asks for records at or after the cursor's second (one second
earlier for the exclusive ones) and keeps those after the cursor's ``(time, key)``. OSCAR
orders its answer by time only and cuts it at ``itemsToReturn``: when an answer is full, the
records of its last second may be incomplete, so they are left for the next page; an answer
whose records all share one second is asked again with a larger limit. Nothing at a page
boundary is lost or read twice.

What the SOAP transfer objects do not carry is not guessed: ``AllergyTransfer`` has no
archived flag (such allergies are mapped without a clinical or verification status), and
``getActiveDemographicsAfter`` lists active patients only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fhirhub.adapters.oscar.dates import parse_datetime
from fhirhub.adapters.oscar.model import Allergy, Appointment, Demographic, Measurement, OscarRecord
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import Cursor, Page, SourceError

log = logging.getLogger("fhirhub.oscar")

EPOCH = "1970-01-01 00:00:00"
#: OSCAR's web-service namespace (its JAX-WS ``@WebService`` classes in ``org.oscarehr.ws``).
OSCAR_WS_NAMESPACE = "http://ws.oscarehr.org/"
#: An answer whose records all share one second is asked again with a limit up to this many
#: times larger before the stream stops with an error (it cannot move past that second).
MAX_LIMIT_GROWTH = 64


def _zeep() -> Any:
    """``zeep`` (imported when a SOAP source is used; its functions carry no annotations)."""
    import zeep
    import zeep.helpers
    import zeep.transports
    import zeep.wsse.username

    return zeep


def _plain(value: Any) -> dict[str, Any]:
    """A zeep object as a dict of its fields."""
    data = _zeep().helpers.serialize_object(value, dict)
    return dict(data) if isinstance(data, dict) else {}


def _is_authentication_fault(exc: Exception) -> bool:
    """A WS-Security refusal (WSS 1.1 §12: ``wsse:FailedAuthentication``, ``InvalidSecurity``
    ...), the answer to an expired or unknown token."""
    from zeep.exceptions import Fault

    if not isinstance(exc, Fault):
        return False
    code = str(getattr(exc, "code", "") or "")
    return "FailedAuthentication" in code or "InvalidSecurity" in code


class OscarSoapClient:
    """One OSCAR's SOAP services: log in once, call with the token, retry what is transient.

    ``attempts`` counts tries of an idempotent read (timeouts, truncated or unparseable XML,
    5xx answers and server faults are retried with back-off); ``addMeasurement`` is tried
    once per call, its retries belong to the write-back (which checks first whether an
    earlier try reached OSCAR)."""

    def __init__(self, settings: OscarSettings, *, attempts: int = 3) -> None:
        if not settings.url or not settings.soap_username:
            raise ValueError(
                "[plugin.oscar] url, soap_username and soap_password are needed for SOAP"
            )
        self.settings = settings
        self.base = settings.url.rstrip("/") + "/ws"
        self.attempts = max(1, attempts)
        self._clients: dict[str, Any] = {}
        self._token: tuple[str, str] | None = None

    def _transport(self) -> Any:
        return _zeep().transports.Transport(
            timeout=self.settings.timeout_s, operation_timeout=self.settings.timeout_s
        )

    def _login(self) -> tuple[str, str]:
        from zeep.exceptions import Fault

        if self._token is None:
            login = _zeep().Client(f"{self.base}/LoginService?wsdl", transport=self._transport())
            try:
                result = login.service.login(
                    self.settings.soap_username, self.settings.soap_password
                )
            except Fault as exc:
                if "Invalid Username/Password" in str(exc):  # never retried: no lock-outs
                    raise SourceError(f"OSCAR LoginService refused the SOAP user: {exc}") from exc
                raise
            if result is None or not getattr(result, "securityTokenKey", None):
                raise SourceError("OSCAR LoginService answered no security token")
            self._token = (str(result.securityId), str(result.securityTokenKey))
        return self._token

    def client(self, name: str) -> Any:
        """The zeep client of ``<name>Service``, signed with the login's UsernameToken."""
        if name not in self._clients:
            user, token = self._login()
            zeep = _zeep()
            self._clients[name] = zeep.Client(
                f"{self.base}/{name}Service?wsdl",
                transport=self._transport(),
                wsse=zeep.wsse.username.UsernameToken(user, token),
            )
        return self._clients[name]

    def _forget_login(self) -> None:
        self._token = None
        self._clients.clear()

    def call(self, service: str, operation: str, *args: Any, retry: bool = True) -> Any:
        """``<service>Service.<operation>(*args)``; raises :class:`SourceError` when OSCAR
        cannot be read after the attempts (or refuses the call)."""
        from requests.exceptions import RequestException
        from zeep.exceptions import Error as ZeepError

        attempts = self.attempts if retry else 1
        relogged = False
        last = "no attempt"
        attempt = 0
        while attempt < attempts:
            if attempt:
                time.sleep(min(4.0, 0.25 * 2**attempt))
            attempt += 1
            try:
                return getattr(self.client(service).service, operation)(*args)
            except SourceError:
                raise
            except (ZeepError, RequestException, ValueError) as exc:
                # ValueError: lxml's XMLSyntaxError (a truncated answer) derives from it.
                if _is_authentication_fault(exc) and not relogged:
                    relogged = True
                    self._forget_login()  # OSCAR restarted: its tokens changed
                    attempt -= 1
                    continue
                last = f"{type(exc).__name__}: {exc}"
                if _is_authentication_fault(exc):
                    break
                log.info("OSCAR SOAP %s.%s attempt %d: %s", service, operation, attempt, last)
        raise SourceError(f"SOAP {service}.{operation} failed after {attempt} attempts: {last}")

    def add_measurement(self, payload: dict[str, Any]) -> str:
        """``MeasurementService.addMeasurement`` (one try); OSCAR's new measurement id."""
        transfer_type = self.client("Measurement").get_type(
            f"{{{OSCAR_WS_NAMESPACE}}}measurementTransfer"
        )
        transfer = transfer_type(
            type=payload["type"],
            demographicId=payload["demographicId"],
            providerNo=payload["providerNo"],
            dataField=payload["dataField"],
            measuringInstruction=payload["measuringInstruction"],
            comments=payload["comments"],
            dateObserved=datetime.fromisoformat(payload["dateObserved"]),
        )
        return str(self.call("Measurement", "addMeasurement", transfer, retry=False))

    def measurements_of(self, demographic_no: int, after: datetime) -> list[dict[str, Any]]:
        """A patient's measurements created after ``after``
        (``getMeasurementsByDemographicIdAfter``), as plain dicts."""
        items = self.call(
            "Measurement", "getMeasurementsByDemographicIdAfter", after, demographic_no
        )
        return [_plain(item) for item in items or []]


@dataclass(frozen=True)
class _Query:
    """One SOAP stream: how to ask, which field orders it, whether the time is inclusive."""

    service: str
    ask: Callable[[OscarSoapClient, datetime, int], Any]
    convert: Callable[[SoapSource, dict[str, Any]], OscarRecord]
    time_field: str
    inclusive: bool
    #: False when the operation has no itemsToReturn (it answers everything after the time).
    limited: bool = True


class SoapSource:
    kind = "soap"
    streams: tuple[str, ...] = ("demographic", "allergies", "measurements", "appointment")

    def __init__(self, settings: OscarSettings, client: OscarSoapClient | None = None) -> None:
        self.settings = settings
        self.client = client or OscarSoapClient(settings)

    def close(self) -> None:
        return None

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        query = _QUERIES.get(stream)
        if query is None:
            raise SourceError(f"the SOAP API has no {stream} stream")
        zone = self.settings.zone
        start_text = max(after.updated or EPOCH, since or EPOCH)
        start = parse_datetime(start_text, zone, field="cursor") or parse_datetime(EPOCH, zone)
        assert start is not None
        asked_from = start if query.inclusive else start - timedelta(seconds=1)
        cursor_key = (after.updated, int(after.key)) if after.key else None
        ask = limit
        while True:
            items = query.ask(self.client, asked_from, ask) or []
            keyed = sorted(
                (
                    (
                        _stamp(getattr(record, query.time_field), self.settings),
                        int(record.key),
                        record,
                    )
                    for record in (query.convert(self, _plain(item)) for item in items)
                ),
                key=lambda item: (item[0], item[1]),
            )
            full = query.limited and len(items) >= ask
            if full and keyed:
                last_second = keyed[-1][0]
                keyed = [k for k in keyed if k[0] < last_second]  # its last second may be cut
            wanted = [
                k
                for k in keyed
                if k[0] >= start_text and (cursor_key is None or (k[0], k[1]) > cursor_key)
            ]
            if wanted or not full:
                break
            if ask >= limit * MAX_LIMIT_GROWTH:
                raise SourceError(
                    f"SOAP {stream}: more than {ask} records share the second after {start_text}"
                )
            ask *= 2
        page = wanted[:limit]
        if not page:
            return Page([], after, True)
        last = page[-1]
        done = not full and len(wanted) <= limit
        return Page([k[2] for k in page], Cursor(last[0], str(last[1])), done)

    @staticmethod
    def _demographic(data: dict[str, Any]) -> Demographic:
        row = {
            "demographic_no": data.get("demographicNo"),
            "title": data.get("title"),
            "last_name": data.get("lastName"),
            "first_name": data.get("firstName"),
            "alias": data.get("alias"),
            "address": data.get("address"),
            "city": data.get("city"),
            "province": data.get("province"),
            "postal": data.get("postal"),
            "phone": data.get("phone"),
            "phone2": data.get("phone2"),
            "email": data.get("email"),
            "year_of_birth": data.get("yearOfBirth"),
            "month_of_birth": data.get("monthOfBirth"),
            "date_of_birth": data.get("dateOfBirth"),
            "hin": data.get("hin"),
            "ver": data.get("ver"),
            "hc_type": data.get("hcType"),
            "hc_renew_date": data.get("hcRenewDate"),
            "roster_status": data.get("rosterStatus"),
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
        return Demographic.from_row(row)

    @staticmethod
    def _allergy(data: dict[str, Any]) -> Allergy:
        row = {
            "allergyid": data.get("id"),
            "demographic_no": data.get("demographicNo"),
            "entry_date": data.get("entryDate"),
            "DESCRIPTION": data.get("description"),
            "TYPECODE": data.get("typeCode"),
            "reaction": data.get("reaction"),
            "regional_identifier": data.get("regionalIdentifier"),
            # AllergyTransfer carries no archived flag: None says "not known" to the mapper.
            "archived": None,
            "start_date": data.get("startDate"),
            "age_of_onset": data.get("ageOfOnset"),
            "severity_of_reaction": data.get("severityOfReaction"),
            "onset_of_reaction": data.get("onsetOfReaction"),
            "life_stage": data.get("lifeStage"),
            "providerNo": data.get("providerNo"),
            "lastUpdateDate": data.get("lastUpdateDate"),
        }
        return Allergy.from_row(row)

    @staticmethod
    def _measurement(data: dict[str, Any]) -> Measurement:
        row = {
            "id": data.get("id"),
            "type": data.get("type"),
            "demographicNo": data.get("demographicId"),
            "providerNo": data.get("providerNo"),
            "dataField": data.get("dataField"),
            "measuringInstruction": data.get("measuringInstruction"),
            "comments": data.get("comments"),
            "dateObserved": data.get("dateObserved"),
            "dateEntered": data.get("createDate"),
            "appointmentNo": data.get("appointmentNo") or None,
        }
        return Measurement.from_row(row)

    def _appointment(self, data: dict[str, Any]) -> Appointment:
        start = parse_datetime(data.get("appointmentStartDateTime"), self.settings.zone)
        end = parse_datetime(data.get("appointmentEndDateTime"), self.settings.zone)
        local_start = start.astimezone(self.settings.zone) if start else None
        local_end = end.astimezone(self.settings.zone) if end else None
        row = {
            "appointment_no": data.get("id"),
            "provider_no": data.get("providerNo"),
            "appointment_date": local_start.date() if local_start else None,
            "start_time": local_start.time() if local_start else None,
            "end_time": local_end.time() if local_end else None,
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
        return Appointment.from_row(row)


_QUERIES: dict[str, _Query] = {
    # ``fields`` must be nil: OSCAR splits it on commas and keeps only the fields named.
    "demographic": _Query(
        "Demographic",
        lambda client, start, _limit: client.call(
            "Demographic", "getActiveDemographicsAfter", start, None
        ),
        lambda source, data: source._demographic(data),
        "lastUpdateDate",
        inclusive=False,
        limited=False,
    ),
    "allergies": _Query(
        "Allergy",
        lambda client, start, limit: client.call(
            "Allergy", "getAllergiesUpdatedAfterDate", start, limit
        ),
        lambda source, data: source._allergy(data),
        "lastUpdateDate",
        inclusive=True,
    ),
    "measurements": _Query(
        "Measurement",
        lambda client, start, limit: client.call(
            "Measurement", "getMeasurementsCreatedAfterDate", start, limit
        ),
        lambda source, data: source._measurement(data),
        "dateEntered",
        inclusive=False,
    ),
    "appointment": _Query(
        "Schedule",
        lambda client, start, limit: client.call(
            "Schedule", "getAppointmentsUpdatedAfterDate", start, limit, False
        ),
        lambda source, data: source._appointment(data),
        "updatedatetime",
        inclusive=False,
    ),
}


def _stamp(value: Any, settings: OscarSettings) -> str:
    parsed = parse_datetime(value, settings.zone)
    return parsed.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M:%S") if parsed else EPOCH
