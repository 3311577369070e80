"""Outbound HL7 v2 feed: committed FHIR changes -> ADT^A04 / ADT^A08 / ORU^R01 over MLLP.

Driven by the plugin's consumer of the version log (Patient and DiagnosticReport versions
only), which the dispatcher calls in log order, at least once, off the writer's thread. Sending synchronously inside the hook keeps that order, so
messages about one patient leave in the order their changes were committed; a retry blocks
only this plugin's cursor. Each send waits for the ACK (AA/CA = delivered); AE and transport
failures are retried with exponential back-off; AR (the receiver will never take it) and
exhausted retries go to the outbound dead-letter list (``Task`` with code
``outbound-dead-letter`` holding the message as a ``Binary``), so nothing is dropped.

The destination is ``FHIRHUB_HL7_OUTBOUND`` (``host:port``) or ``[plugin.hl7] outbound`` in
the TOML file; without one the feed is off.

* Patient created -> ADT^A04 (register a patient), Patient updated -> ADT^A08 (update
  patient information), per the IG's reverse direction of PID.
* DiagnosticReport with status ``final`` (or ``amended``/``corrected``) -> ORU^R01 with one
  OBX per referenced Observation.
* Resources written by the inbound HL7 adapter are sent too: the hub is the hub.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import count
from typing import TYPE_CHECKING, Any

import orjson

from fhirhub.adapters.hl7.parsing import escape
from fhirhub.sdk import FhirError, each_version, process_bundle, read

if TYPE_CHECKING:
    from fhirhub.sdk import Hub, StoredVersion

log = logging.getLogger("fhirhub.hl7.outbound")
_control = count(1)
FINAL_REPORT = ("final", "amended", "corrected", "appended")
GENDER = {"male": "M", "female": "F", "other": "O", "unknown": "U"}


@dataclass
class Destination:
    host: str
    port: int
    timeout: float = 10.0
    attempts: int = 6
    first_delay: float = 0.5
    max_delay: float = 30.0


def destination(hub: Hub) -> Destination | None:
    from fhirhub.adapters.hl7.settings import hl7_settings

    value = hl7_settings(hub).outbound.strip()
    if not value or value.lower() == "off":
        return None
    host, _, port = value.rpartition(":")
    return Destination(host or "127.0.0.1", int(port))


# -- ER7 writing -------------------------------------------------------------------------------


def _ts(value: str | None) -> str:
    """FHIR date/dateTime -> HL7 DTM (``YYYYMMDD[HHMM[SS]][+ZZZZ]``)."""
    if not value:
        return ""
    digits = value.replace("-", "").replace(":", "").replace("T", "")
    zone = ""
    if value.endswith("Z"):
        digits, zone = digits[:-1], "+0000"
    elif len(value) > 19 and value[-6] in "+-":
        digits, zone = digits[:-5], value[-6] + value[-5:].replace(":", "")
    return digits.split(".")[0] + zone


def _e(value: Any) -> str:
    return escape(str(value)) if value is not None else ""


def _cx(identifier: dict[str, Any]) -> str:
    system = str(identifier.get("system", ""))
    authority = system[8:] if system.startswith("urn:oid:") else ""
    namespace = "" if authority else system.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    type_code = ""
    for coding in (identifier.get("type") or {}).get("coding", []):
        type_code = coding.get("code", "")
    hd = f"{_e(namespace)}&{authority}&ISO" if authority else _e(namespace)
    return f"{_e(identifier.get('value'))}^^^{hd}^{_e(type_code)}"


def _xpn(name: dict[str, Any]) -> str:
    given = name.get("given", [])
    return "^".join(
        [
            _e(name.get("family", "")),
            _e(given[0] if given else ""),
            _e(" ".join(given[1:])),
            _e(" ".join(name.get("suffix", []))),
            _e(" ".join(name.get("prefix", []))),
        ]
    ).rstrip("^")


def _xad(address: dict[str, Any]) -> str:
    lines = address.get("line", [])
    kind = {"home": "H", "work": "B", "temp": "C", "old": "BA"}.get(address.get("use", ""), "")
    if address.get("type") == "postal":
        kind = "M"
    parts = [
        lines[0] if lines else "",
        " ".join(lines[1:]),
        address.get("city", ""),
        address.get("state", ""),
        address.get("postalCode", ""),
        address.get("country", ""),
        kind,
    ]
    return "^".join(_e(p) for p in parts).rstrip("^")


def _cwe(concept: dict[str, Any] | None) -> str:
    if not concept:
        return ""
    coding = (concept.get("coding") or [{}])[0]
    system = {
        "http://loinc.org": "LN",
        "http://snomed.info/sct": "SCT",
        "http://unitsofmeasure.org": "UCUM",
    }.get(coding.get("system", ""), "")
    if not system and str(coding.get("system", "")).startswith(
        "http://terminology.hl7.org/CodeSystem/v2-"
    ):
        system = "HL7" + coding["system"].rsplit("-", 1)[-1]
    text = coding.get("display") or concept.get("text", "")
    return f"{_e(coding.get('code', ''))}^{_e(text)}^{system}".rstrip("^")


def _msh(message_type: str, structure: str) -> str:
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    control = f"FH{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}{next(_control):06d}"
    return (
        f"MSH|^~\\&|FHIRHUB|FHIRHUB|||{now}||{message_type}^{structure}|{control}|P|2.5.1|||AL|NE"
    )


def pid_segment(patient: dict[str, Any]) -> str:
    ids = "~".join(_cx(i) for i in patient.get("identifier", []) if i.get("value"))
    names = "~".join(_xpn(n) for n in patient.get("name", []))
    addresses = "~".join(_xad(a) for a in patient.get("address", []))
    phones = "~".join(
        f"{_e(t.get('value'))}^{'WPN' if t.get('use') == 'work' else 'PRN'}^"
        f"{'Internet' if t.get('system') == 'email' else 'PH'}"
        for t in patient.get("telecom", [])
    )
    fields = [
        "PID",
        "1",
        "",
        ids,
        "",
        names,
        "",
        _ts(patient.get("birthDate")),
        GENDER.get(patient.get("gender", ""), ""),
        "",
        "",
        addresses,
        "",
        phones,
    ]
    if patient.get("deceasedDateTime") or patient.get("deceasedBoolean") is not None:
        fields += [""] * (29 - len(fields) + 1)
        fields[29] = _ts(patient.get("deceasedDateTime"))
        fields.append(
            "Y" if patient.get("deceasedDateTime") or patient.get("deceasedBoolean") else "N"
        )
    return "|".join(fields).rstrip("|")


def adt_message(patient: dict[str, Any], event: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    segments = [
        _msh(f"ADT^{event}", "ADT_A01"),
        f"EVN|{event}|{now}",
        pid_segment(patient),
        "PV1|1|N",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


def _obx(index: int, observation: dict[str, Any]) -> str:
    kind, value, units = "ST", "", ""
    if "valueQuantity" in observation:
        quantity = observation["valueQuantity"]
        kind, value = "NM", _e(quantity.get("value", ""))
        units = f"{_e(quantity.get('code') or quantity.get('unit', ''))}^{_e(quantity.get('unit', ''))}^UCUM"
    elif "valueCodeableConcept" in observation:
        kind, value = "CWE", _cwe(observation["valueCodeableConcept"])
    elif "valueString" in observation:
        value = _e(observation["valueString"])
    ranges = observation.get("referenceRange") or [{}]
    low, high = ranges[0].get("low", {}).get("value"), ranges[0].get("high", {}).get("value")
    reference = (
        f"{low}-{high}" if low is not None and high is not None else _e(ranges[0].get("text", ""))
    )
    interpretation = "~".join(_cwe(c) for c in observation.get("interpretation", []))
    status = {
        "final": "F",
        "preliminary": "P",
        "corrected": "C",
        "amended": "C",
        "cancelled": "X",
        "entered-in-error": "W",
    }.get(observation.get("status", ""), "F")
    return "|".join(
        [
            "OBX",
            str(index),
            kind,
            _cwe(observation.get("code")),
            "",
            value,
            units,
            reference,
            interpretation,
            "",
            "",
            status,
            "",
            "",
            _ts(observation.get("effectiveDateTime")),
        ]
    ).rstrip("|")


def oru_message(
    report: dict[str, Any], patient: dict[str, Any], observations: list[dict[str, Any]]
) -> bytes:
    filler = next((i.get("value", "") for i in report.get("identifier", [])), report.get("id", ""))
    status = {"final": "F", "amended": "C", "corrected": "C", "appended": "C"}.get(
        report.get("status", ""), "F"
    )
    obr = "|".join(
        [
            "OBR",
            "1",
            "",
            _e(filler),
            _cwe(report.get("code")),
            "",
            "",
            _ts(report.get("effectiveDateTime")),
        ]
        + [""] * 14
        + [_ts(report.get("issued")), "", "", status]
    )
    segments = [_msh("ORU^R01", "ORU_R01"), pid_segment(patient), obr]
    segments += [_obx(i, o) for i, o in enumerate(observations, 1)]
    return ("\r".join(segments) + "\r").encode("utf-8")


# -- sending -----------------------------------------------------------------------------------


class Rejected(Exception):
    """The receiver answered AR: sending again cannot help."""


def send(dest: Destination, payload: bytes) -> bytes:
    """One MLLP exchange; returns the ACK. Raises on transport errors, AE (retryable) and
    AR (:class:`Rejected`)."""
    with socket.create_connection((dest.host, dest.port), timeout=dest.timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"\x0b" + payload + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the ACK")
            data += chunk
    if b"MSA|AR" in data or b"MSA|CR" in data:
        raise Rejected(data.decode(errors="replace"))
    if b"MSA|AA" not in data and b"MSA|CA" not in data:
        raise ConnectionError(f"negative ACK: {data.decode(errors='replace')[:200]}")
    return data


def deliver(
    hub: Hub, dest: Destination, payload: bytes, *, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Send with retry and exponential back-off; dead-letter when it cannot be delivered."""
    delay = dest.first_delay
    reason = ""
    for attempt in range(1, dest.attempts + 1):
        try:
            send(dest, payload)
            return True
        except Rejected as rejected:
            reason = f"rejected by the receiver: {rejected}"
            break
        except (OSError, ConnectionError) as exc:
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("HL7 outbound attempt %d/%d failed: %s", attempt, dest.attempts, reason)
            if attempt < dest.attempts:
                sleep(delay)
                delay = min(delay * 2, dest.max_delay)
    store_outbound_dead_letter(hub, payload, reason)
    return False


def store_outbound_dead_letter(hub: Hub, payload: bytes, reason: str) -> str:
    key = "hl7out-" + hashlib.sha256(payload).hexdigest()[:40]
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    task = {
        "resourceType": "Task",
        "id": key,
        "status": "failed",
        "intent": "unknown",
        "code": {"coding": [{"system": "urn:fhirhub:hl7v2", "code": "outbound-dead-letter"}]},
        "statusReason": {"text": reason[:4000]},
        "authoredOn": now,
        "lastModified": now,
        "input": [{"type": {"text": "message"}, "valueReference": {"reference": f"Binary/{key}"}}],
    }
    binary = {
        "resourceType": "Binary",
        "id": key,
        "contentType": "x-application/hl7-v2+er7",
        "data": base64.b64encode(payload).decode("ascii"),
    }
    process_bundle(
        hub,
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": binary, "request": {"method": "PUT", "url": f"Binary/{key}"}},
                {"resource": task, "request": {"method": "PUT", "url": f"Task/{key}"}},
            ],
        },
    )
    log.error("HL7 outbound message dead-lettered as Task/%s: %s", key, reason)
    return key


def _read(hub: Hub, reference: str) -> dict[str, Any] | None:
    rtype, _, rid = reference.partition("/")
    if not rtype or not rid:
        return None
    try:
        return read(hub, rtype, rid)
    except FhirError:  # deleted or gone since the report named it
        return None


def message_for(hub: Hub, event: StoredVersion) -> bytes | None:
    """The outbound message for one committed version, or None when it triggers nothing."""
    if event.deleted or event.content is None:
        return None
    resource = orjson.loads(event.content)
    if event.resource_type == "Patient":
        return adt_message(resource, "A04" if event.version_id == 1 else "A08")
    if event.resource_type == "DiagnosticReport" and resource.get("status") in FINAL_REPORT:
        subject = (resource.get("subject") or {}).get("reference", "")
        patient = _read(hub, subject) if subject.startswith("Patient/") else None
        if patient is None:
            return None
        observations = [
            o for o in (_read(hub, r.get("reference", "")) for r in resource.get("result", [])) if o
        ]
        return oru_message(resource, patient, observations)
    return None


#: The resource types whose versions can make a message (see :func:`message_for`).
TRIGGER_TYPES = frozenset({"Patient", "DiagnosticReport"})


def on_committed(hub: Hub, event: StoredVersion) -> None:
    dest = destination(hub)
    if dest is None:
        return
    payload = message_for(hub, event)
    if payload is not None:
        deliver(hub, dest, payload)


def deliver_versions(hub: Hub, versions: Sequence[StoredVersion]) -> None:
    """The consumer: one message per triggering version, in log order; a failure part-way
    keeps what was sent (``each_version``), so the retry sends none twice."""
    if destination(hub) is not None:
        each_version(lambda version: on_committed(hub, version))(versions)
