"""Write-back: Appointments and vital signs booked in fhirhub, sent to OSCAR through its API.

Only what OSCAR accepts through its own API, never its tables: an ``Appointment`` for a
patient and a practitioner that came from this OSCAR goes to REST ``POST /schedule/add``
(NewAppointmentTo1); a vital-sign ``Observation`` of such a patient goes to the SOAP
``MeasurementService.addMeasurement`` (the REST API has no way to add a measurement). OSCAR's
new key is linked to the resource (an identifier, and ``oscar_link`` so the next sync updates
this resource rather than creating a twin).

Loops are prevented: a version that came from OSCAR (``meta.source`` of this instance, or an
OSCAR identifier already on it) is never sent. Each version is queued once in ``oscar_outbox``;
a failed attempt is retried with exponential back-off up to ``writeback_attempts`` times, then
marked ``failed``; both states are shown by ``fhirhub oscar status`` and the admin page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.adapters.oscar import codes
from fhirhub.adapters.oscar.dates import parse_datetime
from fhirhub.adapters.oscar.sources import SourceError
from fhirhub.sdk import StoredVersion, acting_as, system_for, tenant_of, transaction

if TYPE_CHECKING:
    from fhirhub.adapters.oscar.runtime import OscarRuntime

log = logging.getLogger("fhirhub.oscar")
WRITEBACK_TYPES = frozenset({"Appointment", "Observation"})


class NotForOscar(Exception):
    """The version is not something OSCAR should receive (not linked, not a vital sign)."""


def consumer_handler(current: OscarRuntime) -> Callable[[Sequence[StoredVersion]], None]:
    def handle(versions: Sequence[StoredVersion]) -> None:
        queued = False
        for version in versions:
            if version.deleted or not version.content:
                continue
            if current.settings.tenant and version.tenant != current.settings.tenant:
                continue  # another tenant's booking is never sent to this clinic
            resource = orjson.loads(version.content)
            if _from_oscar(resource, current):
                continue
            try:
                _payload(resource, current)  # decide now: only what OSCAR can take is queued
            except NotForOscar:
                continue
            queued |= current.state.enqueue(
                version.resource_type, version.resource_id, str(version.version_id)
            )
        if queued:
            drain(current)

    return handle


def _from_oscar(resource: dict[str, Any], current: OscarRuntime) -> bool:
    """Loop prevention: it was read from this OSCAR, or is already linked to an OSCAR row."""
    settings = current.settings
    if resource.get("meta", {}).get("source") == settings.source_uri:
        return True
    prefix = settings.source_uri + "/"
    systems = {i.get("system", "") for i in resource.get("identifier", [])}
    return any(
        s.startswith(prefix) and s[len(prefix) :] in ("appointment", "measurements")
        for s in systems
    )


def _oscar_key(reference: str, kind: str, current: OscarRuntime) -> str | None:
    """The OSCAR key of a referenced Patient/Practitioner that came from this OSCAR."""
    if "/" not in reference:
        return None
    resource_type, resource_id = reference.split("/")[:2]
    with transaction(current.hub) as tx:
        stored = tx.current(resource_type, resource_id)
    if stored is None or stored.deleted or not stored.content:
        return None
    system = f"{current.settings.source_uri}/{kind}"
    for ident in orjson.loads(stored.content).get("identifier", []):
        if ident.get("system") == system:
            return str(ident.get("value"))
    return None


def _payload(resource: dict[str, Any], current: OscarRuntime) -> tuple[str, dict[str, Any]]:
    zone = current.settings.zone
    if resource.get("resourceType") == "Appointment":
        if resource.get("status") not in ("booked", "pending", "proposed"):
            raise NotForOscar("only new bookings are sent")
        patient = provider = None
        for participant in resource.get("participant", []):
            ref = participant.get("actor", {}).get("reference", "")
            if ref.startswith("Patient/"):
                patient = _oscar_key(ref, "demographic", current)
            elif ref.startswith("Practitioner/"):
                provider = _oscar_key(ref, "provider", current)
        if not patient or not provider:
            raise NotForOscar("patient or practitioner not linked to this OSCAR")
        start = parse_datetime(resource.get("start"), zone, field="start")
        end = parse_datetime(resource.get("end"), zone, field="end")
        if start is None:
            raise NotForOscar("no start")
        local = start.astimezone(zone)
        minutes = (
            int((end - start).total_seconds() // 60)
            if end
            else int(resource.get("minutesDuration") or 15)
        )
        return "appointment", {
            "providerNo": provider,
            "demographicNo": int(patient),
            "appointmentDate": local.strftime("%Y-%m-%d"),
            "startTime": local.strftime("%H:%M"),
            "duration": max(1, minutes),
            "status": "t",
            "type": (resource.get("appointmentType") or {}).get("text", ""),
            "reason": ", ".join(
                c.get("text", "") for c in resource.get("reasonCode", []) if c.get("text")
            ),
            "notes": resource.get("comment", ""),
            "name": "",
            "location": "",
            "resources": "",
            "urgency": "",
        }
    if resource.get("resourceType") == "Observation":
        categories = {
            c.get("code") for cat in resource.get("category", []) for c in cat.get("coding", [])
        }
        loinc = next(
            (
                c.get("code")
                for c in resource.get("code", {}).get("coding", [])
                if c.get("system") == codes.LOINC
            ),
            None,
        )
        kind = codes.OSCAR_TYPE_BY_LOINC.get(loinc or "")
        if (
            "vital-signs" not in categories
            or kind is None
            or resource.get("status") not in ("final", "amended", "preliminary")
        ):
            raise NotForOscar("not a vital sign OSCAR has a type for")
        patient = _oscar_key(
            resource.get("subject", {}).get("reference", ""), "demographic", current
        )
        if not patient:
            raise NotForOscar("patient not linked to this OSCAR")
        if kind == "BP":
            parts = {
                c.get("code", {}).get("coding", [{}])[0].get("code"): c.get(
                    "valueQuantity", {}
                ).get("value")
                for c in resource.get("component", [])
            }
            systolic, diastolic = parts.get("8480-6"), parts.get("8462-4")
            if systolic is None or diastolic is None:
                raise NotForOscar("blood pressure without both components")
            value = f"{_plain(systolic)}/{_plain(diastolic)}"
        else:
            quantity = resource.get("valueQuantity", {})
            if "value" not in quantity:
                raise NotForOscar("no value")
            value = _plain(quantity["value"])
        performer = next(
            (
                p.get("reference", "")
                for p in resource.get("performer", [])
                if p.get("reference", "").startswith("Practitioner/")
            ),
            "",
        )
        provider = (
            _oscar_key(performer, "provider", current) if performer else None
        ) or current.settings.writeback_provider_no
        observed = parse_datetime(
            resource.get("effectiveDateTime"), zone, field="effectiveDateTime"
        )
        return "measurement", {
            "type": kind,
            "demographicId": int(patient),
            "providerNo": provider or "",
            "dataField": value,
            "measuringInstruction": "",
            "comments": sent_marker(resource),
            "dateObserved": _oscar_time(observed, zone),
        }
    raise NotForOscar(resource.get("resourceType", "?"))


def _plain(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number == int(number) else str(number)


def drain(current: OscarRuntime) -> int:
    """Send what is due; returns how many were sent."""
    sent = 0
    for row in current.state.due():
        attempts = int(row["attempts"]) + 1
        try:
            key = _send(current, row)
        except NotForOscar as exc:
            current.state.outbox_result(
                row["id"], status="failed", attempts=attempts, error=f"not sendable: {exc}"
            )
            continue
        except Exception as exc:  # network, OSCAR refused: retried with back-off, then failed
            final = attempts >= current.settings.writeback_attempts
            delay = min(3600.0, 2.0 * 2 ** (attempts - 1))
            current.state.outbox_result(
                row["id"],
                status="failed" if final else "pending",
                attempts=attempts,
                next_attempt=time.time() + delay,
                error=f"{type(exc).__name__}: {exc}",
            )
            log.warning(
                "OSCAR write-back of %s/%s attempt %d failed: %s",
                row["resource_type"],
                row["resource_id"],
                attempts,
                exc,
            )
            continue
        current.state.outbox_result(row["id"], status="sent", attempts=attempts, oscar_key=key)
        sent += 1
    return sent


def _send(current: OscarRuntime, row: dict[str, Any]) -> str:
    resource_type, resource_id = str(row["resource_type"]), str(row["resource_id"])
    with transaction(current.hub) as tx:
        stored = tx.current(resource_type, resource_id)
    if stored is None or stored.deleted or not stored.content:
        raise NotForOscar("the resource is gone")
    resource = orjson.loads(stored.content)
    kind, payload = _payload(resource, current)
    if kind == "appointment":
        from fhirhub.adapters.oscar.sources.rest import OscarRestClient

        client = OscarRestClient(current.settings, attempts=1)
        try:
            answer = client.call("POST", "/schedule/add", body=payload) or {}
        finally:
            client.close()
        key = str((answer.get("appointment") or {}).get("id") or "")
        stream, system = "appointment", "appointment"
    else:
        from fhirhub.adapters.oscar.sources.soap import OscarSoapClient

        soap = OscarSoapClient(current.settings)
        earlier = _already_sent(soap, payload, row) if int(row["attempts"]) else None
        key = earlier or soap.add_measurement(payload)
        stream, system = "measurements", "measurements"
    if not key or key in ("None", "0"):
        raise SourceError(f"OSCAR accepted the {kind} but returned no id")
    _link(current, resource_type, resource_id, stream, system, key, tenant_of(resource))
    return key


def sent_marker(resource: dict[str, Any]) -> str:
    """The ``comments`` of a measurement sent to OSCAR: names the Observation, so that a retry
    can tell whether an earlier attempt reached OSCAR."""
    return f"sent from fhirhub as Observation/{resource.get('id', '')}"


def _already_sent(soap: Any, payload: dict[str, Any], row: dict[str, Any]) -> str | None:
    """OSCAR's id of a measurement an earlier attempt added though its answer was lost (a
    time-out after OSCAR committed): ``addMeasurement`` is not idempotent, so a retry asks
    for the patient's measurements created since the write-back was queued, first."""
    queued = datetime.fromisoformat(str(row["created"]).replace("Z", "+00:00"))
    for measurement in soap.measurements_of(payload["demographicId"], queued - timedelta(hours=1)):
        if measurement.get("comments") == payload["comments"] and measurement.get("id"):
            return str(measurement["id"])
    return None


def _link(
    current: OscarRuntime,
    resource_type: str,
    resource_id: str,
    stream: str,
    system: str,
    key: str,
    tenant: str | None,
) -> None:
    """Record OSCAR's key on the resource (an identifier; the update is not sent again, see
    :func:`_from_oscar`) and in ``oscar_link`` for the next sync."""
    current.state.link(stream, key, resource_type, resource_id)
    with acting_as(system_for(tenant)), transaction(current.hub) as tx:
        resource = tx.read(resource_type, resource_id)
        resource.pop("meta", None)
        identifier = {"system": f"{current.settings.source_uri}/{system}", "value": key}
        if identifier not in resource.get("identifier", []):
            resource["identifier"] = [*resource.get("identifier", []), identifier]
            tx.update(resource)


def _oscar_time(observed: datetime | None, zone: Any) -> str:
    """When a measurement was taken, in the clinic's time zone as OSCAR writes it (now when
    the Observation does not say)."""
    when = observed or datetime.now(zone)
    return str(when.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S"))
