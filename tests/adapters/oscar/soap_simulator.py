"""An OSCAR SOAP simulator on loopback (``spyne``), written from the facts of OSCAR's JAX-WS
services and transfer objects (``org.oscarehr.ws``; none of their code).

What it keeps of OSCAR, because the adapter depends on it:

* the services at ``/oscar/ws/<Name>Service`` with their WSDL at ``?wsdl``, document/literal
  in the namespace ``http://ws.oscarehr.org/``, parameters named ``arg0``, ``arg1``... unless
  OSCAR names them (``lastUpdate``, ``fields``, ``demographicId``), results in ``return``;
* ``LoginService.login(user, password)`` answering a ``loginResultTransfer`` (security id and
  a token derived from the server's start time and the password), a fault for a wrong
  password; every other call needs a WS-Security UsernameToken whose Username is the
  security id and whose Password the token (or the password), else a
  ``wsse:FailedAuthentication`` fault (as OSCAR's CXF interceptor answers);
* the incremental reads' semantics: ``getAllergiesUpdatedAfterDate`` inclusive, the others
  exclusive, ordered by time only and cut at ``itemsToReturn`` (ties come in reverse key
  order here, the worst case a client can meet), ``getActiveDemographicsAfter`` with no limit,
  active patients only, and its ``fields`` filter (an empty string keeps no field);
* ``addMeasurement`` storing a row (``dateEntered`` now) and answering its id;
* a fault mode: the next requests time out, answer a SOAP fault, a bare HTTP 500 or
  truncated XML, or store and then time out (the answer lost after the commit);
  ``restart()`` changes the tokens as an OSCAR restart does.

Requests are validated against the WSDL's schema by spyne (``validator="lxml"``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from io import BytesIO
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from zoneinfo import ZoneInfo

from lxml import etree
from spyne import (
    Application,
    Boolean,
    ComplexModel,
    DateTime,
    Integer32,
    ServiceBase,
    Unicode,
    rpc,
)
from spyne.model.fault import Fault
from spyne.protocol.soap import Soap11
from spyne.server.wsgi import WsgiApplication

TNS = "http://ws.oscarehr.org/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
#: OSCAR's ``security`` row the adapter logs in with: (user name, password, securityNo).
SOAP_USER = ("fhirhub-sync", "Wk4-pass-2025", 17)
ZONE = ZoneInfo("America/Vancouver")


# -- transfer objects (field names and types as OSCAR's JAXB beans have them) ---------------
class LoginResultTransfer(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "loginResultTransfer"
    _type_info = [("securityId", Integer32), ("securityTokenKey", Unicode)]


class DemographicTransfer(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "demographicTransfer"
    _type_info = [
        ("address", Unicode),
        ("alias", Unicode),
        ("chartNo", Unicode),
        ("city", Unicode),
        ("dateJoined", DateTime),
        ("dateOfBirth", Unicode),
        ("demographicNo", Integer32),
        ("email", Unicode),
        ("firstName", Unicode),
        ("hcRenewDate", DateTime),
        ("hcType", Unicode),
        ("hin", Unicode),
        ("lastName", Unicode),
        ("lastUpdateDate", DateTime),
        ("lastUpdateUser", Unicode),
        ("monthOfBirth", Unicode),
        ("officialLanguage", Unicode),
        ("patientStatus", Unicode),
        ("patientStatusDate", DateTime),
        ("phone", Unicode),
        ("phone2", Unicode),
        ("postal", Unicode),
        ("providerNo", Unicode),
        ("province", Unicode),
        ("rosterStatus", Unicode),
        ("sex", Unicode),
        ("spokenLanguage", Unicode),
        ("title", Unicode),
        ("ver", Unicode),
        ("yearOfBirth", Unicode),
    ]


class AllergyTransfer(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "allergyTransfer"
    _type_info = [
        ("ageOfOnset", Unicode),
        ("demographicNo", Integer32),
        ("description", Unicode),
        ("entryDate", DateTime),
        ("id", Integer32),
        ("lastUpdateDate", DateTime),
        ("lifeStage", Unicode),
        ("onsetOfReaction", Unicode),
        ("providerNo", Unicode),
        ("reaction", Unicode),
        ("regionalIdentifier", Unicode),
        ("severityOfReaction", Unicode),
        ("startDate", DateTime),
        ("typeCode", Integer32),
    ]


class MeasurementTransfer(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "measurementTransfer"
    _type_info = [
        ("appointmentNo", Integer32),
        ("comments", Unicode),
        ("createDate", DateTime),
        ("dataField", Unicode),
        ("dateObserved", DateTime),
        ("demographicId", Integer32),
        ("id", Integer32),
        ("measuringInstruction", Unicode),
        ("providerNo", Unicode),
        ("type", Unicode),
    ]


class AppointmentTransfer(ComplexModel):
    __namespace__ = TNS
    __type_name__ = "appointmentTransfer"
    _type_info = [
        ("appointmentEndDateTime", DateTime),
        ("appointmentStartDateTime", DateTime),
        ("createDateTime", DateTime),
        ("demographicNo", Integer32(min_occurs=1, nillable=False)),
        ("id", Integer32),
        ("location", Unicode),
        ("name", Unicode),
        ("notes", Unicode),
        ("providerNo", Unicode),
        ("reason", Unicode),
        ("remarks", Unicode),
        ("status", Unicode),
        ("type", Unicode),
        ("updateDateTime", DateTime),
        ("urgency", Unicode),
    ]


def _many(cls: type[ComplexModel]) -> Any:
    return cls.customize(max_occurs="unbounded")


_REQUIRED_INT = Integer32(min_occurs=1, nillable=False)
_REQUIRED_BOOL = Boolean(min_occurs=1, nillable=False)


# -- values as OSCAR's beans give them ----------------------------------------------------
def _when(value: Any) -> datetime | None:
    """A row's local date/datetime as an instant in the clinic's zone (zero dates: null, as
    OSCAR's JDBC driver is configured to give them)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=ZONE)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=ZONE)
    if isinstance(value, str) and value and not value.startswith(("0000", "0001")):
        return datetime.fromisoformat(value).replace(tzinfo=ZONE)
    return None


def _local(value: datetime | None) -> datetime | None:
    """An instant the client sent, as the clinic's local wall time (OSCAR's columns)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value
    return value.astimezone(ZONE).replace(tzinfo=None)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _demographic(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": row.get("address"),
        "alias": row.get("alias"),
        "chartNo": row.get("chart_no"),
        "city": row.get("city"),
        "dateJoined": _when(row.get("date_joined")),
        "dateOfBirth": row.get("date_of_birth"),
        "demographicNo": row["demographic_no"],
        "email": row.get("email"),
        "firstName": row.get("first_name"),
        "hcRenewDate": _when(row.get("hc_renew_date")),
        "hcType": row.get("hc_type"),
        "hin": row.get("hin"),
        "lastName": row.get("last_name"),
        "lastUpdateDate": _when(row.get("lastUpdateDate")),
        "lastUpdateUser": row.get("lastUpdateUser"),
        "monthOfBirth": row.get("month_of_birth"),
        "officialLanguage": row.get("official_lang"),
        "patientStatus": row.get("patient_status"),
        "patientStatusDate": _when(row.get("patient_status_date")),
        "phone": row.get("phone"),
        "phone2": row.get("phone2"),
        "postal": row.get("postal"),
        "providerNo": row.get("provider_no"),
        "province": row.get("province"),
        "rosterStatus": row.get("roster_status"),
        "sex": row.get("sex"),
        "spokenLanguage": row.get("spoken_lang"),
        "title": row.get("title"),
        "ver": row.get("ver"),
        "yearOfBirth": row.get("year_of_birth"),
    }


def _allergy(row: dict[str, Any]) -> AllergyTransfer:
    return AllergyTransfer(
        ageOfOnset=_text(row.get("age_of_onset")),
        demographicNo=row["demographic_no"],
        description=row.get("DESCRIPTION"),
        entryDate=_when(row.get("entry_date")),
        id=row["allergyid"],
        lastUpdateDate=_when(row.get("lastUpdateDate")),
        lifeStage=row.get("life_stage"),
        onsetOfReaction=_text(row.get("onset_of_reaction")),
        providerNo=row.get("providerNo"),
        reaction=row.get("reaction"),
        regionalIdentifier=row.get("regional_identifier"),
        severityOfReaction=_text(row.get("severity_of_reaction")),
        startDate=_when(row.get("start_date")),
        typeCode=row.get("TYPECODE"),
    )


def _measurement(row: dict[str, Any]) -> MeasurementTransfer:
    return MeasurementTransfer(
        appointmentNo=row.get("appointmentNo"),
        comments=row.get("comments"),
        createDate=_when(row.get("dateEntered")),
        dataField=row.get("dataField"),
        dateObserved=_when(row.get("dateObserved")),
        demographicId=row["demographicNo"],
        id=row["id"],
        measuringInstruction=row.get("measuringInstruction"),
        providerNo=row.get("providerNo"),
        type=row.get("type"),
    )


def _at(day: Any, clock: Any, use_gmt: bool) -> datetime | None:
    if not isinstance(day, date) or clock is None:
        return None
    if isinstance(clock, timedelta):
        clock = (datetime.min + clock).time()
    when = datetime.combine(day, clock, tzinfo=ZONE)
    return when.astimezone(ZoneInfo("UTC")) if use_gmt else when


def _appointment(row: dict[str, Any], use_gmt: bool) -> AppointmentTransfer:
    return AppointmentTransfer(
        appointmentEndDateTime=_at(row.get("appointment_date"), row.get("end_time"), use_gmt),
        appointmentStartDateTime=_at(row.get("appointment_date"), row.get("start_time"), use_gmt),
        createDateTime=_when(row.get("createdatetime")),
        demographicNo=int(row.get("demographic_no") or 0),
        id=row["appointment_no"],
        location=row.get("location"),
        name=row.get("name"),
        notes=row.get("notes"),
        providerNo=row.get("provider_no"),
        reason=row.get("reason"),
        remarks=row.get("remarks"),
        status=row.get("status"),
        type=row.get("type"),
        updateDateTime=_when(row.get("updatedatetime")),
        urgency=row.get("urgency"),
    )


def _after(
    rows: Iterable[dict[str, Any]],
    column: str,
    key: str,
    since: datetime | None,
    *,
    inclusive: bool,
) -> list[dict[str, Any]]:
    """Rows whose ``column`` is after ``since``, ordered by it alone; ties in reverse key
    order (a database gives them in no promised order)."""
    bound = _local(since)
    chosen = []
    for row in rows:
        when = _when(row.get(column))
        local = when.replace(tzinfo=None) if when else None
        if bound is None or (
            local is not None and (local >= bound if inclusive else local > bound)
        ):
            chosen.append(row)
    chosen.sort(key=lambda r: -int(r[key]))
    chosen.sort(key=lambda r: _when(r.get(column)) or datetime.min.replace(tzinfo=ZONE))
    return chosen


class OscarSoapSimulator:
    """OSCAR's SOAP services over ``rows`` (the synthetic clinic's tables, changed in place
    by the tests as OSCAR's users would)."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], *, delay_s: float = 3.0) -> None:
        self.rows = rows
        #: The next requests' faults, in order: "timeout", "fault", "500", "truncated",
        #: "lost" (handled, then the answer never comes), or None (answered normally).
        self.faults: list[str | None] = []
        self.delay_s = delay_s
        self.started_ms = int(time.time() * 1000)
        self.calls: list[tuple[str, str]] = []
        self.refused = 0
        self.added: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.apps = {
            f"/oscar/ws/{name}Service": WsgiApplication(
                Application(
                    [service],
                    tns=TNS,
                    name=f"{name}WsService",
                    in_protocol=Soap11(validator="lxml"),
                    out_protocol=Soap11(),
                )
            )
            for name, service in self._services().items()
        }
        self.server = make_server(
            "127.0.0.1", 0, self._route, server_class=_ThreadingServer, handler_class=_Quiet
        )
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/oscar"

    def __enter__(self) -> OscarSoapSimulator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)

    # -- OSCAR's security -----------------------------------------------------------------
    def token(self) -> str:
        """OSCAR's token: the server's start time plus a rendition of the password."""
        mangling, position = 0, 0
        for char in SOAP_USER[1]:
            mangling += ord(char) * 100**position
            position = (position + 1) % 6
        return str(self.started_ms + mangling)

    def restart(self) -> None:
        """OSCAR restarted: tokens issued before are refused."""
        self.started_ms += 1000

    def _accepts(self, username: str, password: str) -> bool:
        return username == str(SOAP_USER[2]) and password in (self.token(), SOAP_USER[1])

    # -- the services -------------------------------------------------------------------------
    def _services(self) -> dict[str, type[ServiceBase]]:
        sim = self

        class LoginWs(ServiceBase):
            @rpc(Unicode, Unicode, _returns=LoginResultTransfer, _out_variable_name="return")
            def login(ctx: Any, arg0: str, arg1: str) -> LoginResultTransfer:
                if arg0 != SOAP_USER[0] or arg1 != SOAP_USER[1]:
                    sim.refused += 1
                    raise Fault("soap:Server", "Invalid Username/Password")
                return LoginResultTransfer(securityId=SOAP_USER[2], securityTokenKey=sim.token())

        class DemographicWs(ServiceBase):
            @rpc(
                DateTime,
                Unicode,
                _returns=_many(DemographicTransfer),
                _out_variable_name="return",
            )
            def getActiveDemographicsAfter(  # noqa: N802 (OSCAR's operation name)
                ctx: Any, lastUpdate: datetime | None, fields: str | None
            ) -> list[DemographicTransfer]:
                active = [r for r in sim.rows["demographic"] if r.get("patient_status") == "AC"]
                chosen = _after(
                    active, "lastUpdateDate", "demographic_no", lastUpdate, inclusive=False
                )
                wanted = fields.split(",") if fields is not None else None
                out = []
                for row in chosen:
                    values = _demographic(row)
                    if wanted is not None:
                        values = {k: v for k, v in values.items() if k in wanted}
                    out.append(DemographicTransfer(**values))
                return out

        class AllergyWs(ServiceBase):
            @rpc(
                DateTime,
                _REQUIRED_INT,
                _returns=_many(AllergyTransfer),
                _out_variable_name="return",
            )
            def getAllergiesUpdatedAfterDate(  # noqa: N802
                ctx: Any, arg0: datetime | None, arg1: int
            ) -> list[AllergyTransfer]:
                rows = _after(
                    sim.rows["allergies"], "lastUpdateDate", "allergyid", arg0, inclusive=True
                )
                return [_allergy(r) for r in rows[:arg1]]

        class MeasurementWs(ServiceBase):
            @rpc(
                DateTime,
                _REQUIRED_INT,
                _returns=_many(MeasurementTransfer),
                _out_variable_name="return",
            )
            def getMeasurementsCreatedAfterDate(  # noqa: N802
                ctx: Any, arg0: datetime | None, arg1: int
            ) -> list[MeasurementTransfer]:
                rows = _after(sim.rows["measurements"], "dateEntered", "id", arg0, inclusive=False)
                return [_measurement(r) for r in rows[:arg1]]

            @rpc(
                DateTime,
                Integer32,
                _returns=_many(MeasurementTransfer),
                _out_variable_name="return",
            )
            def getMeasurementsByDemographicIdAfter(  # noqa: N802
                ctx: Any, lastUpdate: datetime | None, demographicId: int | None
            ) -> list[MeasurementTransfer]:
                mine = [r for r in sim.rows["measurements"] if r["demographicNo"] == demographicId]
                rows = _after(mine, "dateEntered", "id", lastUpdate, inclusive=False)
                return [_measurement(r) for r in rows]

            @rpc(MeasurementTransfer, _returns=Integer32, _out_variable_name="return")
            def addMeasurement(ctx: Any, arg0: MeasurementTransfer | None) -> int:  # noqa: N802
                if arg0 is None or not arg0.type or arg0.demographicId is None:
                    raise Fault("soap:Client", "a measurement needs a type and a demographicId")
                with sim._lock:
                    new_id = max((int(r["id"]) for r in sim.rows["measurements"]), default=0) + 1
                    row = {
                        "id": new_id,
                        "type": arg0.type,
                        "demographicNo": arg0.demographicId,
                        "providerNo": arg0.providerNo or "",
                        "dataField": arg0.dataField or "",
                        "measuringInstruction": arg0.measuringInstruction or "",
                        "comments": arg0.comments or "",
                        "dateObserved": _local(arg0.dateObserved),
                        "dateEntered": datetime.now(ZONE).replace(tzinfo=None, microsecond=0),
                        "appointmentNo": arg0.appointmentNo,
                    }
                    sim.rows["measurements"].append(row)
                    sim.added.append(row)
                return new_id

        class ScheduleWs(ServiceBase):
            @rpc(
                DateTime,
                _REQUIRED_INT,
                _REQUIRED_BOOL,
                _returns=_many(AppointmentTransfer),
                _out_variable_name="return",
            )
            def getAppointmentsUpdatedAfterDate(  # noqa: N802
                ctx: Any, arg0: datetime | None, arg1: int, arg2: bool
            ) -> list[AppointmentTransfer]:
                rows = _after(
                    sim.rows["appointment"],
                    "updatedatetime",
                    "appointment_no",
                    arg0,
                    inclusive=False,
                )
                return [_appointment(r, arg2) for r in rows[:arg1]]

        return {
            "Login": LoginWs,
            "Demographic": DemographicWs,
            "Allergy": AllergyWs,
            "Measurement": MeasurementWs,
            "Schedule": ScheduleWs,
        }

    # -- HTTP: routing, WS-Security, faults --------------------------------------------------
    def _route(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        app = self.apps.get(environ.get("PATH_INFO", ""))
        if app is None:
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"no such service"]
        if environ["REQUEST_METHOD"] != "POST":
            return app(environ, start_response)  # the WSDL
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = BytesIO(body)
        operation = self._operation(body)
        self.calls.append((environ["PATH_INFO"].rsplit("/", 1)[-1], operation))
        fault = self.faults.pop(0) if self.faults else None
        if fault == "timeout":
            time.sleep(self.delay_s)
        elif fault == "500":
            start_response("500 Internal Server Error", [("Content-Type", "text/html")])
            return [b"<html><body><h1>HTTP Status 500</h1></body></html>"]
        elif fault == "fault":
            return _fault(
                start_response, "soap:Server", "org.hibernate.exception.JDBCConnectionException"
            )
        if not environ["PATH_INFO"].endswith("/LoginService") and not self._signed(body):
            self.refused += 1
            return _fault(
                start_response,
                "wsse:FailedAuthentication",
                "The security token could not be authenticated or authorized",
            )
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        answer = b"".join(app(environ, capture))
        if fault == "lost":
            time.sleep(self.delay_s)  # OSCAR did it; the answer never reaches the client
        if fault == "truncated":
            answer = answer[: len(answer) // 2]
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], [*headers, ("Content-Length", str(len(answer)))])
        return [answer]

    @staticmethod
    def _operation(body: bytes) -> str:
        try:
            envelope = etree.fromstring(body)
        except etree.XMLSyntaxError:
            return "?"
        payload = envelope.find(f"{{{SOAP_ENV}}}Body")
        if payload is None or not len(payload):
            return "?"
        return str(etree.QName(payload[0]).localname)

    def _signed(self, body: bytes) -> bool:
        """WS-Security 1.0 UsernameToken (PasswordText) in the SOAP header, checked as OSCAR's
        validator does: the Username is the security id, the Password its token or password."""
        try:
            envelope = etree.fromstring(body)
        except etree.XMLSyntaxError:
            return False
        token = envelope.find(f"{{{SOAP_ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        username = token.findtext(f"{{{WSSE}}}Username") or ""
        password = token.findtext(f"{{{WSSE}}}Password") or ""
        return self._accepts(username, password)


def _fault(start_response: Callable[..., Any], code: str, text: str) -> list[bytes]:
    body = (
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
        f'<faultcode xmlns:wsse="{WSSE}">{code}</faultcode><faultstring>{text}</faultstring>'
        "</soap:Fault></soap:Body></soap:Envelope>"
    ).encode()
    start_response(
        "500 Internal Server Error",
        [("Content-Type", "text/xml; charset=utf-8"), ("Content-Length", str(len(body)))],
    )
    return [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        return None
