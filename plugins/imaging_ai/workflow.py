"""The radiologist's decisions, as plain FHIR updates any client can make (the UI's buttons
make the same ones):

* a finding ``Observation`` (tagged ``urn:fhirhub:imaging-ai|finding``) set to ``final`` is
  approved into the report, ``cancelled`` declined (``note`` gives the reason); the model's
  output (code, value, source) cannot be edited, and a signed report's findings are frozen;
* the ``DiagnosticReport`` (tagged ``report``) set to ``final`` is signed: refused with 409
  while a finding is undecided, 400 without a signer in ``resultsInterpreter``; signing sets
  ``issued``, renders the report into ``presentedForm`` (HTML and PDF) and, in the same transaction,
  writes a ``Provenance`` whose ``signature`` names the signer (``before_commit``). A signed
  report changes only as ``amended``/``corrected``, or to ``entered-in-error``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from fhirhub.plugins.imaging_ai.fhir_output import (
    CARRIED_STATUSES,
    DECISION_URL,
    TAG_FINDING,
    TAG_REPORT,
    TAG_SYSTEM,
)
from fhirhub.plugins.imaging_ai.render import presented_form, render_html, render_pdf
from fhirhub.sdk import (
    FhirError,
    Transaction,
    WriteContext,
    acting_as,
    conflict,
    current_access,
    format_instant,
    invalid,
    system_for,
    writing_transaction,
)

DECIDED = ("final", "cancelled", "entered-in-error")
SIGNED = ("final", "amended", "corrected", "appended")
#: Who may decide findings and sign (the system too, for loaders and migrations).
DECIDERS = ("clinician", "radiologist", "org_admin", "super_admin")
#: The model's output: what a decision may not change.
MODEL_OUTPUT = ("code", "valueQuantity", "derivedFrom", "device", "subject", "component")

#: id(unit of work) -> (the unit, weakly; the reports signed in it), for the Provenance
#: written in ``before_commit``. A unit that rolled back leaves a dead entry, which a later
#: unit with a recycled id never takes for its own (the weak reference tells them apart).
_signed: dict[int, tuple[weakref.ref[Any], list[dict[str, Any]]]] = {}
_signed_lock = threading.Lock()


def _note_signing(unit: Any, signing: dict[str, Any]) -> None:
    with _signed_lock:
        for key in [k for k, (ref, _) in _signed.items() if ref() is None]:
            _signed.pop(key, None)
        entry = _signed.get(id(unit))
        if entry is None or entry[0]() is not unit:
            entry = _signed[id(unit)] = (weakref.ref(unit), [])
        entry[1].append(signing)


def _take_signings(unit: Any) -> list[dict[str, Any]]:
    with _signed_lock:
        entry = _signed.pop(id(unit), None)
    if entry is None or entry[0]() is not unit:
        return []
    return entry[1]


def _tagged(resource: dict[str, Any], tag: dict[str, str]) -> bool:
    return any(
        t.get("system") == TAG_SYSTEM and t.get("code") == tag["code"]
        for t in resource.get("meta", {}).get("tag", [])
    )


def _previous(context: WriteContext) -> dict[str, Any] | None:
    import orjson

    version = context.previous
    if version is None or getattr(version, "deleted", False) or not version.content:
        return None
    content: dict[str, Any] = orjson.loads(version.content)
    return content


def before_write(resource: dict[str, Any], context: WriteContext) -> None:
    if context.resource_type == "Observation":
        previous = _previous(context)
        if previous is not None and _tagged(previous, TAG_FINDING):
            _check_decision(resource, previous, context)
    elif context.resource_type == "DiagnosticReport":
        previous = _previous(context)
        if _tagged(resource, TAG_REPORT) or (previous and _tagged(previous, TAG_REPORT)):
            _check_report(resource, previous, context)


def _check_decision(
    resource: dict[str, Any], previous: dict[str, Any], context: WriteContext
) -> None:
    access = current_access()
    if access.scopes is not None:
        access.require_role(*DECIDERS)
    for element in MODEL_OUTPUT:
        if resource.get(element) != previous.get(element):
            raise conflict(
                f"Observation.{element} is the model's output and cannot be changed: decline "
                "the finding (status cancelled) and record your own Observation instead"
            )
    _stamp_decision(resource, previous, access.subject)
    if resource.get("status") == previous.get("status"):
        return
    tx = writing_transaction(context)
    reports = tx.search("DiagnosticReport", {"result": f"Observation/{context.resource_id}"})
    for report in reports:
        if report.get("status") in SIGNED:
            raise conflict(
                f"The finding belongs to the signed DiagnosticReport/{report['id']}; "
                "amend the report instead"
            )


def _stamp_decision(resource: dict[str, Any], previous: dict[str, Any], subject: str) -> None:
    """Record who decided a finding and when (the :data:`DECISION_URL` extension, kept when a
    re-analysis carries the decision over). The hub owns it: a decision sets it, any other
    update keeps the previous one, whatever the client sent."""
    others = [e for e in resource.get("extension", []) if e.get("url") != DECISION_URL]
    status = resource.get("status")
    stamp: dict[str, Any] | None
    if status != previous.get("status"):
        stamp = None
        if status in CARRIED_STATUSES:
            at = format_instant(int(time.time() * 1_000_000))
            stamp = {
                "url": DECISION_URL,
                "extension": [
                    {"url": "by", "valueString": subject},
                    {"url": "at", "valueDateTime": at},
                ],
            }
    else:
        stamp = next(
            (e for e in previous.get("extension", []) if e.get("url") == DECISION_URL), None
        )
    if stamp is not None:
        others.append(stamp)
    if others:
        resource["extension"] = others
    else:
        resource.pop("extension", None)


def _check_report(
    resource: dict[str, Any], previous: dict[str, Any] | None, context: WriteContext
) -> None:
    old = (previous or {}).get("status")
    new = resource.get("status")
    access = current_access()
    if old in SIGNED:
        if new == "entered-in-error" or new in ("amended", "corrected"):
            return
        strip = ("meta", "text")
        if {k: v for k, v in resource.items() if k not in strip} != {
            k: v for k, v in (previous or {}).items() if k not in strip
        }:
            raise conflict(
                f"DiagnosticReport/{context.resource_id} is signed: change it only as "
                "'amended' or 'corrected', or mark it 'entered-in-error'"
            )
        return
    if new not in SIGNED:
        return
    if access.scopes is not None:
        access.require_role(*DECIDERS)
    signers = resource.get("resultsInterpreter") or []
    if not signers or not signers[0].get("reference"):
        raise invalid(
            "Signing needs the signer: resultsInterpreter naming the Practitioner (or "
            "PractitionerRole) who signs"
        )
    tx = writing_transaction(context)
    findings = []
    undecided = []
    for entry in resource.get("result", []):
        reference = str(entry.get("reference", ""))
        kind, _, ident = reference.partition("/")
        try:
            observation = tx.read(kind, ident)
        except FhirError:
            undecided.append(reference)
            continue
        findings.append(observation)
        if observation.get("status") not in DECIDED:
            name = observation.get("code", {}).get("text", "")
            undecided.append(f"{reference} ({name})" if name else reference)
    if undecided:
        raise conflict(
            "Decide every finding before signing (approve: status final; decline: status "
            f"cancelled). Undecided: {', '.join(undecided)}"
        )
    signed = format_instant(int(time.time() * 1_000_000))
    signer = signers[0].get("display") or signers[0]["reference"]
    resource["issued"] = signed
    resource["id"] = context.resource_id
    resource["presentedForm"] = [
        presented_form(render_html(resource, findings, signer, signed), signed),
        presented_form(render_pdf(resource, findings, signer, signed), signed, "application/pdf"),
    ]
    _note_signing(
        context.unit_of_work, {"id": context.resource_id, "signer": signers[0], "when": signed}
    )


def before_commit(transaction: Transaction) -> None:
    """The signature: one Provenance per report signed in this unit, naming the version."""
    pending = _take_signings(transaction.unit_of_work)
    if not pending:
        return
    versions = {
        v.resource_id: v.version_id
        for v in transaction.written
        if v.resource_type == "DiagnosticReport"
    }
    for signing in pending:
        version = versions.get(signing["id"])
        target = f"DiagnosticReport/{signing['id']}"
        if version is not None:
            target += f"/_history/{version}"
        # Provenance is append-only and written by the hub itself (never with a user's
        # scopes): the system acting for the signer's tenant records the signature.
        with acting_as(system_for(current_access().tenant)):
            transaction.create(signature_provenance(target, signing["signer"], signing["when"]))


def signature_provenance(target: str, signer: dict[str, Any], when: str) -> dict[str, Any]:
    who = {k: v for k, v in signer.items() if k in ("reference", "display")}
    return {
        "resourceType": "Provenance",
        "meta": {
            "tag": [{"system": TAG_SYSTEM, "code": "signature", "display": "Report signature"}]
        },
        "target": [{"reference": target}],
        "recorded": when,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "LA",
                    "display": "legal authenticator",
                }
            ]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "attester",
                        }
                    ]
                },
                "who": who,
            }
        ],
        "signature": [
            {
                "type": [
                    {
                        "system": "urn:iso-astm:E1762-95:2013",
                        "code": "1.2.840.10065.1.12.1.5",
                        "display": "Verification Signature",
                    }
                ],
                "when": when,
                "who": who,
                "targetFormat": "text/html",
            }
        ],
    }
