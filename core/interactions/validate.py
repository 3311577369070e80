"""``[type]/$validate`` and ``[type]/[id]/$validate``
(http://hl7.org/fhir/R4/resource-operation-validate.html).

The resource is checked as a write would check it (structure, cardinality, primitive formats,
required bindings: errors), and beyond that for its codes in elements bound ``extensible`` or
``preferred``: a code from a system a terminology can check that is not in the bound value
set is a ``warning`` (``code-invalid``), since R4 allows such codes
(http://hl7.org/fhir/R4/terminologies.html#strength). Only ``$validate`` pays for that check:
the write path never walks these bindings and never refuses a write for them. The value set
membership is asked of the ``validate_bound_codes`` hook (the terminology plugin answers);
with no plugin answering these bindings are not checked, and the outcome says so.

The answer is 200 with an OperationOutcome whether or not the resource is valid (the
operation's ``return``); a request that cannot be validated at all (no resource, a bad
``mode``) is a 400.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhirhub.fhir_store.errors import Issue, invalid, operation_outcome
from fhirhub.fhir_store.validation import resource_issues
from fhirhub.fhir_store.validation.coded_bindings import BoundCode, bound_codes

if TYPE_CHECKING:
    from fhirhub.core.hub import Hub
    from fhirhub.core.operations import OperationCall

#: http://hl7.org/fhir/R4/valueset-resource-validation-mode.html
MODES = ("create", "update", "delete")
BASE_PROFILE = "http://hl7.org/fhir/StructureDefinition/"


def validate_operation(call: OperationCall) -> dict[str, Any]:
    resource_type = call.resource_type
    assert resource_type is not None  # a type or instance level operation
    mode = _single(call, "mode")
    if mode is not None and mode not in MODES:
        raise invalid(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    resource = _posted_resource(call)
    issues: list[Issue] = []
    if resource is None:
        if call.resource_id is None:
            raise invalid(
                f"{resource_type}/$validate needs the resource: POST it, or a Parameters "
                "resource with a 'resource' parameter"
            )
        resource = _stored(call.hub, resource_type, call.resource_id)
    if mode == "delete":
        if call.resource_id is None:
            raise invalid("mode=delete needs the instance: POST [type]/[id]/$validate")
        _stored(call.hub, resource_type, call.resource_id)  # 404 unless the caller sees it
        return _outcome(issues)
    if call.resource_id is not None and isinstance(resource, dict):
        if resource.get("id") not in (None, call.resource_id):
            issues.append(
                Issue(
                    "error",
                    "invalid",
                    f"The resource's id {resource.get('id')!r} is not the id in the URL "
                    f"({call.resource_id!r})",
                    ("id",),
                )
            )
    if mode == "update" and isinstance(resource, dict) and not resource.get("id"):
        issues.append(Issue("error", "required", "An update needs the resource's id", ("id",)))
    profile = _single(call, "profile")
    if profile and profile != f"{BASE_PROFILE}{resource_type}":
        issues.append(
            Issue(
                "warning",
                "not-supported",
                f"Profile {profile} is not checked: the resource was validated against the "
                f"base R4 definition of {resource_type}",
            )
        )
    structure = resource_issues(resource, expected_type=resource_type)
    issues.extend(structure)
    if isinstance(resource, dict) and not any(i.code == "too-costly" for i in structure):
        issues.extend(binding_issues(call.hub, resource))
    return _outcome(issues)


def binding_issues(hub: Hub, resource: dict[str, Any]) -> list[Issue]:
    """A ``warning`` for each code outside its extensible or preferred value set, as the
    ``validate_bound_codes`` hook answers; an ``information`` issue when no plugin can."""
    codes = bound_codes(resource)
    if not codes:
        return []
    if not hub.plugins.hook.validate_bound_codes.get_hookimpls():
        return [
            Issue(
                "information",
                "not-supported",
                "Extensible and preferred bindings were not checked: no terminology plugin "
                "is enabled",
            )
        ]
    outside: list[BoundCode] | None = hub.hook.validate_bound_codes(codes=codes, hub=hub)
    return [
        Issue(
            "warning",
            "code-invalid",
            f"{code.system}#{code.code} is not in the value set {code.value_set} "
            f"({code.strength} binding of {code.element})",
            (code.expression,),
        )
        for code in outside or []
    ]


def _outcome(issues: list[Issue]) -> dict[str, Any]:
    if not issues:
        # R4: an OperationOutcome has at least one issue.
        issues = [Issue("information", "informational", "No issues found")]
    return operation_outcome(issues)


def _single(call: OperationCall, name: str) -> str | None:
    values = call.parameters.get(name) or []
    if len(values) > 1:
        raise invalid(f"Give {name} once")
    return values[0] if values else None


def _posted_resource(call: OperationCall) -> Any:
    """The resource to validate: the POSTed body itself, or the ``resource`` parameter of a
    POSTed Parameters."""
    body = call.body
    if body is None:
        return None
    if body.get("resourceType") != "Parameters" or call.resource_type == "Parameters":
        return body
    parameters = body.get("parameter")
    if not isinstance(parameters, list):
        return None
    found = [p for p in parameters if isinstance(p, dict) and p.get("name") == "resource"]
    if len(found) > 1:
        raise invalid("Give one 'resource' parameter")
    if not found:
        return None
    resource = found[0].get("resource")
    if not isinstance(resource, dict):
        raise invalid("The 'resource' parameter must hold a resource (parameter.resource)")
    return resource


def _stored(hub: Hub, resource_type: str, resource_id: str) -> dict[str, Any]:
    import orjson

    from fhirhub.core.interactions.read import read

    with hub.store.read() as conn:
        version = read(conn, resource_type, resource_id)
    assert version.content is not None  # read() refuses a deletion (410)
    resource: dict[str, Any] = orjson.loads(version.content)
    return resource
