"""An OSCAR REST (OAuth 1.0a) simulator on loopback, written from OSCAR's transfer objects.

It verifies every request's HMAC-SHA1 signature with ``oauthlib`` (a wrong secret is a 401),
answers with OSCAR's JSON shapes and quirks (wrapped roots, a one-item list as a bare
object, dates as epoch milliseconds or ``yyyy-MM-dd``), keeps booked appointments, and has a
fault mode: the next N requests time out, answer 500, or send truncated JSON.
"""

from __future__ import annotations

import threading
import time
from datetime import date, datetime, timedelta
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response
from oauthlib.oauth1 import RequestValidator, SignatureOnlyEndpoint

from tests.adapters.oscar.mariadb_server import _free_port

CONSUMER = ("fhirhubconsumerkey0001", "consumer-secret-abcdefgh")
TOKEN = ("accesstokenoscar000001", "token-secret-ijklmnop")


class _Validator(RequestValidator):
    enforce_ssl = False

    @property
    def client_key_length(self) -> tuple[int, int]:
        return (10, 64)

    @property
    def access_token_length(self) -> tuple[int, int]:
        return (10, 64)

    @property
    def nonce_length(self) -> tuple[int, int]:
        return (10, 64)

    def __init__(self) -> None:
        super().__init__()
        self.nonces: set[tuple[str, str]] = set()

    def validate_client_key(self, client_key: str, request: Any) -> bool:
        return client_key == CONSUMER[0]

    def validate_access_token(self, client_key: str, token: str, request: Any) -> bool:
        return token == TOKEN[0]

    def get_client_secret(self, client_key: str, request: Any) -> str:
        return CONSUMER[1]

    def get_access_token_secret(self, client_key: str, token: str, request: Any) -> str:
        return TOKEN[1]

    def validate_timestamp_and_nonce(
        self,
        client_key: str,
        timestamp: str,
        nonce: str,
        request: Any,
        request_token: str | None = None,
        access_token: str | None = None,
    ) -> bool:
        if (timestamp, nonce) in self.nonces:
            return False  # a replayed request
        self.nonces.add((timestamp, nonce))
        return True

    @property
    def dummy_client(self) -> str:
        return "dummyclientkey000000"

    @property
    def dummy_access_token(self) -> str:
        return "dummyaccesstoken0000"

    def get_rsa_key(self, client_key: str, request: Any) -> str:
        return ""


def _millis(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, date):
        return int(datetime(value.year, value.month, value.day).timestamp() * 1000)
    return value


def _day(value: Any) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def one_or_many(items: list[dict[str, Any]]) -> Any:
    """OSCAR's quirk: a list of one item is sent as the bare object."""
    return items[0] if len(items) == 1 else items


class OscarRestSimulator:
    def __init__(self, rows: dict[str, list[dict[str, Any]]]) -> None:
        self.rows = rows
        self.validator = _Validator()
        self.endpoint = SignatureOnlyEndpoint(self.validator)
        self.faults: list[
            str | None
        ] = []  # "timeout" | "500" | "truncated" | None (pass), in order
        self.booked: list[dict[str, Any]] = []
        self.requests = 0
        self.rejected = 0
        self.app = self._app()
        self.port = _free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oscar"

    def __enter__(self) -> OscarRestSimulator:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    # -- OSCAR's JSON shapes ------------------------------------------------------------
    def _demographic(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "demographicNo": row["demographic_no"],
            "title": row["title"],
            "lastName": row["last_name"],
            "firstName": row["first_name"],
            "address": {
                "address": row["address"],
                "city": row["city"],
                "province": row["province"],
                "postal": row["postal"],
            },
            "phone": row["phone"],
            "alternativePhone": row["phone2"],
            "email": row["email"],
            "dobYear": row["year_of_birth"],
            "dobMonth": row["month_of_birth"],
            "dobDay": row["date_of_birth"],
            "hin": row["hin"],
            "ver": row["ver"],
            "hcType": row["hc_type"],
            "rosterStatus": row["roster_status"],
            "patientStatus": row["patient_status"],
            "patientStatusDate": _millis(row["patient_status_date"])
            if not isinstance(row["patient_status_date"], str)
            else None,
            "dateJoined": _day(row["date_joined"]),
            "chartNo": row["chart_no"],
            "officialLanguage": row["official_lang"],
            "spokenLanguage": row["spoken_lang"],
            "providerNo": row["provider_no"],
            "sex": row["sex"],
            "lastUpdateDate": _millis(row["lastUpdateDate"]),
        }

    def _allergy(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["allergyid"],
            "demographicNo": row["demographic_no"],
            "entryDate": _day(row["entry_date"]),
            "description": row["DESCRIPTION"],
            "typeCode": row["TYPECODE"],
            "reaction": row["reaction"],
            "regionalIdentifier": row["regional_identifier"],
            "archived": row["archived"] == "1",
            "startDate": None if isinstance(row["start_date"], str) else _day(row["start_date"]),
            "severityOfReaction": row["severity_of_reaction"],
            "onsetOfReaction": row["onset_of_reaction"],
            "lifeStage": row["life_stage"],
            "providerNo": row["providerNo"],
            "lastUpdateDate": _millis(row["lastUpdateDate"]),
        }

    def _drug(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "drugId": row["drugid"],
            "brandName": row["BN"],
            "genericName": row["GN"],
            "atc": row["ATC"],
            "regionalIdentifier": row["regional_identifier"],
            "demographicNo": row["demographic_no"],
            "providerNo": row["provider_no"],
            "takeMin": row["takemin"],
            "takeMax": row["takemax"],
            "rxDate": _millis(row["rx_date"]),
            "endDate": _millis(row["end_date"]) if not isinstance(row["end_date"], str) else None,
            "writtenDate": _millis(row["written_date"]),
            "frequency": row["freqcode"],
            "duration": int(row["duration"]),
            "durationUnit": row["durunit"],
            "route": row["route"],
            "method": row["method"],
            "prn": bool(row["prn"]),
            "repeats": row["repeat"],
            "quantity": int(row["quantity"]),
            "instructions": row["special"],
            "additionalInstructions": row["special_instruction"],
            "archived": bool(row["archived"]),
            "archivedReason": row["archived_reason"],
            "longTerm": bool(row["long_term"]),
            "strengthUnit": row["unit"],
        }

    def _measurement(self, row: dict[str, Any]) -> dict[str, Any]:
        observed = row["dateObserved"]
        return {
            "id": row["id"],
            "type": row["type"],
            "demographicId": row["demographicNo"],
            "providerNo": row["providerNo"],
            "dataField": row["dataField"],
            "measuringInstruction": row["measuringInstruction"],
            "comments": row["comments"],
            "dateObserved": None
            if isinstance(observed, str)
            else observed.strftime("%Y-%m-%dT%H:%M:%S"),
            "createDate": _millis(row["dateEntered"]),
            "appointmentNo": 0,
        }

    def _appointment(self, row: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": row["appointment_no"],
            "providerNo": row["provider_no"],
            "appointmentDate": _day(row["appointment_date"]),
            "startTime": row["start_time"].strftime("%H:%M:%S"),
            "endTime": row["end_time"].strftime("%H:%M:%S"),
            "name": row["name"],
            "demographicNo": row["demographic_no"],
            "notes": row["notes"],
            "reason": row["reason"],
            "location": row["location"],
            "type": row["type"],
            "status": row["status"],
            "createDateTime": _millis(row["createdatetime"]),
            "updateDateTime": _millis(row["updatedatetime"]),
        }

    def _notes(self, number: int) -> list[dict[str, Any]]:
        current: dict[str, dict[str, Any]] = {}
        for row in self.rows["casemgmt_note"]:
            if row["demographic_no"] == number and (
                row["uuid"] not in current or current[row["uuid"]]["note_id"] < row["note_id"]
            ):
                current[row["uuid"]] = row
        issues = {i["issue_id"]: i for i in self.rows["issue"]}
        out = []
        for row in current.values():
            links = {
                link["id"]
                for link in self.rows["casemgmt_issue_notes"]
                if link["note_id"] == row["note_id"]
            }
            assigned = [
                {
                    "issue": {
                        "code": issues[ci["issue_id"]]["code"],
                        "description": issues[ci["issue_id"]]["description"],
                    },
                    "resolved": bool(ci["resolved"]),
                    "certain": bool(ci["certain"]),
                }
                for ci in self.rows["casemgmt_issue"]
                if ci["id"] in links
            ]
            out.append(
                {
                    "noteId": row["note_id"],
                    "uuid": row["uuid"],
                    "note": row["note"],
                    "isSigned": bool(row["signed"]),
                    "providerNo": row["provider_no"],
                    "observationDate": _millis(row["observation_date"]),
                    "updateDate": _millis(row["update_date"]),
                    "archived": bool(row["archived"]),
                    "encounterType": row["encounter_type"],
                    "assignedIssues": one_or_many(assigned) if assigned else [],
                }
            )
        return out

    def _app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def oauth_and_faults(request: Request, call_next: Any) -> Response:
            self.requests += 1
            valid, _ = self.endpoint.validate_request(
                str(request.url), request.method, None, dict(request.headers)
            )
            if not valid:
                self.rejected += 1
                return Response(status_code=401, content=b"OAuth signature invalid")
            fault = self.faults.pop(0) if self.faults else None
            if fault is not None:
                if fault == "timeout":
                    time.sleep(3)
                    return Response(status_code=504)
                if fault == "500":
                    return Response(status_code=500, content=b"java.lang.NullPointerException")
                response = await call_next(request)
                body = b"".join([chunk async for chunk in response.body_iterator])
                return Response(
                    content=body[: max(1, len(body) // 2)], media_type="application/json"
                )
            return await call_next(request)

        def json(value: Any) -> Response:
            return Response(orjson.dumps(value), media_type="application/json")

        base = "/oscar/ws/services"

        @app.get(base + "/providerService/providers_json")
        def providers() -> Response:
            items = [
                {
                    "providerNo": p["provider_no"],
                    "lastName": p["last_name"],
                    "firstName": p["first_name"],
                    "providerType": p["provider_type"],
                    "specialty": p["specialty"],
                    "sex": {"name": p["sex"]},
                    "workPhone": p["work_phone"],
                    "email": p["email"],
                    "billingNo": p["billing_no"],
                    "practitionerNo": p["practitionerNo"],
                    "practitionerNoType": p["practitionerNoType"],
                    "enabled": p["status"] == "1",
                    "lastUpdateDate": _millis(p["lastUpdateDate"]),
                }
                for p in self.rows["provider"]
            ]
            return json({"offset": 0, "limit": len(items), "total": len(items), "content": items})

        @app.get(base + "/demographics")
        def demographics(offset: int = 0, limit: int = 10) -> Response:
            rows = sorted(self.rows["demographic"], key=lambda r: r["demographic_no"])[
                offset : offset + limit
            ]
            return json(
                {
                    "offset": offset,
                    "limit": limit,
                    "total": len(self.rows["demographic"]),
                    "content": one_or_many([self._demographic(r) for r in rows]) if rows else [],
                }
            )

        @app.get(base + "/allergies/active")
        def allergies(demographicNo: int) -> Response:
            items = [
                self._allergy(r)
                for r in self.rows["allergies"]
                if r["demographic_no"] == demographicNo and r["archived"] != "1"
            ]
            return json({"allergies": one_or_many(items) if items else []})

        @app.get(base + "/rx/drugs/all/{number}")
        def drugs(number: int) -> Response:
            items = [self._drug(r) for r in self.rows["drugs"] if r["demographic_no"] == number]
            return json({"content": {"drug": one_or_many(items)}} if items else {"content": None})

        @app.post(base + "/measurements/{number}")
        def measurements(number: int) -> Response:
            grouped: dict[str, list[dict[str, Any]]] = {}
            for row in self.rows["measurements"]:
                if row["demographicNo"] == number:
                    grouped.setdefault(row["type"], []).append(self._measurement(row))
            return json({"measurementMap": {k: one_or_many(v) for k, v in grouped.items()}})

        @app.post(base + "/schedule/{number}/appointmentHistory")
        def history(number: int) -> Response:
            items = [
                self._appointment(r)
                for r in self.rows["appointment"]
                if r["demographic_no"] == number
            ]
            return json({"appointments": one_or_many(items) if items else []})

        @app.post(base + "/notes/{number}/all")
        def notes(number: int) -> Response:
            items = self._notes(number)
            return json({"notelist": one_or_many(items) if items else []})

        @app.post(base + "/schedule/add")
        async def add(request: Request) -> Response:
            body = orjson.loads(await request.body())
            number = 90000 + len(self.booked) + 1
            start = datetime.fromisoformat(f"{body['appointmentDate']}T{body['startTime']}")
            row = {
                "appointment_no": number,
                "provider_no": body["providerNo"],
                "appointment_date": start.date(),
                "start_time": start.time(),
                "end_time": (start + timedelta(minutes=int(body["duration"]) - 1)).time(),
                "name": body.get("name", ""),
                "demographic_no": body["demographicNo"],
                "notes": body.get("notes", ""),
                "reason": body.get("reason", ""),
                "location": "",
                "type": body.get("type", ""),
                "status": body.get("status", "t"),
                "createdatetime": datetime.now(),
                "updatedatetime": datetime.now(),
            }
            self.booked.append(row)
            return json({"appointment": self._appointment(row)})

        return app
