"""OSCAR's SOAP services (``/ws/<Name>Service``) with ``zeep``: the incremental reads.

OSCAR's SOAP API has what its REST API lacks, "updated after" queries
(``getActiveDemographicsAfter``, ``getAllergiesUpdatedAfterDate``,
``getMeasurementsCreatedAfterDate``, ``getAppointmentsUpdatedAfterDate``), and the only way to
add a measurement (``addMeasurement``). Authentication: ``LoginService.login`` gives a
security id and token, sent as a WS-Security UsernameToken on every other call.

These queries take a date, not a key: a page asks for records updated at or after the
cursor's time and drops those at exactly that time whose key is not after the cursor's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhirhub.adapters.oscar.dates import parse_datetime
from fhirhub.adapters.oscar.model import Allergy, Appointment, Demographic, Measurement, OscarRecord
from fhirhub.adapters.oscar.settings import OscarSettings
from fhirhub.adapters.oscar.sources import Cursor, Page, SourceError

EPOCH = "1970-01-01 00:00:00"


def _plain(value: Any) -> dict[str, Any]:
    """A zeep object as a dict of its fields."""
    from zeep.helpers import serialize_object

    data = serialize_object(value, dict)
    return dict(data) if isinstance(data, dict) else {}


class OscarSoapClient:
    def __init__(self, settings: OscarSettings) -> None:
        if not settings.url or not settings.soap_username:
            raise ValueError(
                "[plugin.oscar] url, soap_username and soap_password are needed for SOAP"
            )
        self.settings = settings
        self.base = settings.url.rstrip("/") + "/ws"
        self._services: dict[str, Any] = {}
        self._token: tuple[str, str] | None = None

    def _transport(self) -> Any:
        from zeep.transports import Transport

        return Transport(timeout=self.settings.timeout_s, operation_timeout=self.settings.timeout_s)

    def _login(self) -> tuple[str, str]:
        from zeep import Client

        if self._token is None:
            login = Client(f"{self.base}/LoginService?wsdl", transport=self._transport())
            result = login.service.login(self.settings.soap_username, self.settings.soap_password)
            if result is None or not getattr(result, "securityTokenKey", None):
                raise SourceError("OSCAR LoginService refused the SOAP user")
            self._token = (str(result.securityId), str(result.securityTokenKey))
        return self._token

    def service(self, name: str) -> Any:
        from zeep import Client
        from zeep.wsse.username import UsernameToken

        if name not in self._services:
            user, token = self._login()
            client = Client(
                f"{self.base}/{name}Service?wsdl",
                transport=self._transport(),
                wsse=UsernameToken(user, token),
            )
            self._services[name] = client.service
        return self._services[name]

    def call(self, service: str, operation: str, *args: Any) -> Any:
        from requests.exceptions import RequestException
        from zeep.exceptions import Error as ZeepError

        try:
            return getattr(self.service(service), operation)(*args)
        except (ZeepError, RequestException) as exc:
            raise SourceError(f"SOAP {service}.{operation}: {type(exc).__name__}: {exc}") from exc

    def add_measurement(self, payload: dict[str, Any]) -> Any:
        from zeep import Client

        self.service("Measurement")
        client: Client = Client(f"{self.base}/MeasurementService?wsdl", transport=self._transport())
        factory = client.type_factory("ns0")
        observed = datetime.fromisoformat(payload["dateObserved"])
        transfer = factory.measurementTransfer(
            type=payload["type"],
            demographicId=payload["demographicId"],
            providerNo=payload["providerNo"],
            dataField=payload["dataField"],
            measuringInstruction=payload["measuringInstruction"],
            comments=payload["comments"],
            dateObserved=observed,
        )
        return self.call("Measurement", "addMeasurement", transfer)


class SoapSource:
    kind = "soap"
    streams: tuple[str, ...] = ("demographic", "allergies", "measurements", "appointment")

    def __init__(self, settings: OscarSettings, client: OscarSoapClient | None = None) -> None:
        self.settings = settings
        self.client = client or OscarSoapClient(settings)

    def close(self) -> None:
        return None

    def read(self, stream: str, after: Cursor, limit: int, since: str | None = None) -> Page:
        start_text = max(after.updated or EPOCH, since or EPOCH)
        start = parse_datetime(start_text, self.settings.zone, field="cursor") or parse_datetime(
            EPOCH, self.settings.zone
        )
        if stream == "demographic":
            items = self.client.call("Demographic", "getActiveDemographicsAfter", start, "") or []
            records: list[OscarRecord] = [self._demographic(_plain(i)) for i in items]
            updated_field = "lastUpdateDate"
        elif stream == "allergies":
            items = self.client.call("Allergy", "getAllergiesUpdatedAfterDate", start, limit) or []
            records = [self._allergy(_plain(i)) for i in items]
            updated_field = "lastUpdateDate"
        elif stream == "measurements":
            items = (
                self.client.call("Measurement", "getMeasurementsCreatedAfterDate", start, limit)
                or []
            )
            records = [self._measurement(_plain(i)) for i in items]
            updated_field = "dateEntered"
        elif stream == "appointment":
            items = (
                self.client.call("Schedule", "getAppointmentsUpdatedAfterDate", start, limit, False)
                or []
            )
            records = [self._appointment(_plain(i)) for i in items]
            updated_field = "updatedatetime"
        else:
            raise SourceError(f"the SOAP API has no {stream} stream")
        keyed = []
        for record in records:
            stamp = _stamp(getattr(record, updated_field), self.settings)
            keyed.append((stamp, int(record.key), record))
        keyed.sort(key=lambda item: (item[0], item[1]))
        if not after.is_start:
            keyed = [k for k in keyed if (k[0], k[1]) > (after.updated, int(after.key or -1))]
        keyed = keyed[:limit]
        if not keyed:
            return Page([], after, True)
        last = keyed[-1]
        return Page([k[2] for k in keyed], Cursor(last[0], str(last[1])), len(keyed) < limit)

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
            "archived": data.get("archived"),
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


def _stamp(value: Any, settings: OscarSettings) -> str:
    parsed = parse_datetime(value, settings.zone)
    return parsed.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M:%S") if parsed else EPOCH
