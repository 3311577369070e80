"""The FHIR terminology operations (http://hl7.org/fhir/R4/terminology-service.html):
``CodeSystem/$lookup``, ``CodeSystem/$validate-code``, ``CodeSystem/$subsumes``,
``ValueSet/$expand``, ``ValueSet/$validate-code`` and ``ConceptMap/$translate``.

Every authenticated caller whose scopes read the type may call them; a code system url means
the caller's tenant's own CodeSystem of that url when it has one, else the shared one
(:meth:`Terminology.find`). Nothing here writes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fhirhub.plugins.terminology import store, supplements
from fhirhub.plugins.terminology.expand import Entry, Expansion, Options, expand
from fhirhub.plugins.terminology.model import check_code
from fhirhub.plugins.terminology.service import Terminology, service_of
from fhirhub.plugins.terminology.translate import translate
from fhirhub.sdk import FhirError, Operation, OperationCall, format_instant, invalid, new_id

MAX_COUNT_DEFAULT = 1000


# -- parameters -------------------------------------------------------------------------------


def _body_parameter(call: OperationCall, name: str) -> dict[str, Any] | None:
    body = call.body or {}
    if body.get("resourceType") != "Parameters":
        return None
    for parameter in body.get("parameter") or []:
        if isinstance(parameter, dict) and parameter.get("name") == name:
            return parameter
    return None


def _text(call: OperationCall, name: str) -> str | None:
    values = call.parameters.get(name) or []
    if len(values) > 1:
        raise invalid(f"Parameter {name!r} is given more than once")
    return values[0] if values else None


def _texts(call: OperationCall, name: str) -> list[str]:
    return list(call.parameters.get(name) or [])


def _integer(call: OperationCall, name: str, default: int | None, high: int) -> int | None:
    text = _text(call, name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise invalid(f"{name} must be an integer, not {text!r}") from None
    if value < 0:
        raise invalid(f"{name} must not be negative")
    if value > high:
        raise FhirError(400, f"{name} is limited to {high}", code="too-costly")
    return value


def _boolean(call: OperationCall, name: str) -> bool:
    text = _text(call, name)
    if text is None:
        return False
    if text.lower() not in ("true", "false"):
        raise invalid(f"{name} must be true or false, not {text!r}")
    return text.lower() == "true"


def _coding(call: OperationCall, name: str) -> dict[str, Any] | None:
    parameter = _body_parameter(call, name)
    if parameter is None:
        return None
    coding = parameter.get("valueCoding")
    if not isinstance(coding, dict):
        raise invalid(f"Parameter {name!r} must be a Coding")
    return coding


def _codings_in(call: OperationCall) -> list[dict[str, Any]]:
    """``coding`` or ``codeableConcept`` of a ``$validate-code``."""
    coding = _coding(call, "coding")
    if coding is not None:
        return [coding]
    parameter = _body_parameter(call, "codeableConcept")
    if parameter is not None:
        concept = parameter.get("valueCodeableConcept")
        if not isinstance(concept, dict):
            raise invalid("Parameter 'codeableConcept' must be a CodeableConcept")
        return [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    return []


def _param(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"name": name, "valueBoolean": value}
    if isinstance(value, dict):
        return {"name": name, "valueCoding": value}
    return {"name": name, "valueString": str(value)}


def _parameters(*items: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [item for item in items if item]}


def _service(call: OperationCall) -> Terminology:
    return service_of(call.hub)


# -- CodeSystem/$lookup -----------------------------------------------------------------------


def lookup(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/codesystem-operation-lookup.html"""
    coding = _coding(call, "coding")
    system = _text(call, "system") or (coding or {}).get("system")
    code = _text(call, "code") or (coding or {}).get("code")
    version = _text(call, "version") or (coding or {}).get("version")
    if not system or not code:
        raise invalid("$lookup needs system and code (or a coding)")
    check_code(code)
    wanted = set(_texts(call, "property"))
    service = _service(call)
    with service.read() as conn:
        found = service.code_system(conn, system, version)
        row = service.concept(conn, found, code)
        if row is None:
            raise FhirError(
                404,
                f"Code {code!r} is not in CodeSystem {system} version {found.version}",
                code="not-found",
            )
        used = supplements.resolve(service, conn, _texts(call, "useSupplement"))
        added, added_properties = supplements.additions(service, conn, used, found.url, code)
    out: list[dict[str, Any]] = [
        _param("name", found.name or found.url),
        _param("version", found.version),
    ]
    if row.display:
        out.append(_param("display", row.display))
    if row.definition:
        out.append(_param("definition", row.definition))
    for designation in json.loads(row.designations or "[]") + added:
        part = [{"name": "value", "valueString": designation["value"]}]
        if designation.get("language"):
            part.insert(0, {"name": "language", "valueCode": designation["language"]})
        if designation.get("use"):
            part.insert(
                -1,
                {"name": "use", "valueCoding": {"system": found.url, "code": designation["use"]}},
            )
        out.append({"name": "designation", "part": part})

    def add_property(name: str, value: Any) -> None:
        if wanted and name not in wanted:
            return
        typed = (
            {"name": "value", "valueBoolean": value}
            if isinstance(value, bool)
            else {"name": "value", "valueCode": value}
        )
        out.append({"name": "property", "part": [{"name": "code", "valueCode": name}, typed]})

    for parent in row.parents:
        add_property("parent", parent)
    for child in row.children:
        add_property("child", child)
    for name, value in [*row.properties, *added_properties]:
        add_property(name, value)
    add_property("inactive", bool(row.inactive))
    if row.abstract:
        add_property("notSelectable", True)
    return _parameters(*out)


# -- CodeSystem/$validate-code ------------------------------------------------------------------

#: Property values that mark a concept deprecated (still valid, to be replaced): the FHIR
#: ``status`` property (http://hl7.org/fhir/concept-properties#status) and a
#: ``deprecationDate``/``deprecated`` property, as code systems give them.
_DEPRECATED = ("status", "deprecated")
_DEPRECATION_PROPERTIES = ("deprecationDate", "deprecated")


class _Check:
    """What ``$validate-code`` found for one coding: errors make the result false, warnings
    are returned with a true result (R4: "If this [message] is provided when result = true,
    the message carries hints and warnings"), each also as an issue of an OperationOutcome
    (the ``issues`` output of later FHIR versions, which R4 clients may ignore)."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, str]] = []  # (issue code, text)
        self.warnings: list[tuple[str, str]] = []
        self.display: str | None = None
        self.inactive = False

    def error(self, code: str, text: str) -> None:
        self.errors.append((code, text))

    def warn(self, code: str, text: str) -> None:
        self.warnings.append((code, text))

    def parameters(self, failed: Sequence[_Check] = ()) -> dict[str, Any]:
        """The output: this check's when it found no error, else the errors of ``failed``
        (every coding tried) and this one."""
        ok = not self.errors
        checks = [self] if ok else [*failed, self]
        errors = [e for check in checks for e in check.errors]
        warnings = self.warnings
        shown = [text for _, text in (errors if not ok else warnings)]
        out: list[dict[str, Any]] = [_param("result", ok)]
        if shown:
            out.append(_param("message", "; ".join(shown)))
        if ok:
            out.append(_param("display", self.display))
            if self.inactive:
                out.append(_param("inactive", True))
        issues = [("error", code, text) for code, text in errors] + [
            ("warning", code, text) for code, text in warnings
        ]
        if issues:
            out.append(
                {
                    "name": "issues",
                    "resource": {
                        "resourceType": "OperationOutcome",
                        "issue": [
                            {"severity": severity, "code": code, "details": {"text": text}}
                            for severity, code, text in issues
                        ],
                    },
                }
            )
        return _parameters(*out)


def _names(row: Any) -> list[str]:
    return [row.display or ""] + [d["value"] for d in json.loads(row.designations or "[]")]


def _check_display(
    check: _Check,
    where: str,
    names: list[str],
    preferred: str | None,
    display: str | None,
    lenient: bool,
) -> None:
    """A display must be the concept's display or one of its designations. One that differs
    only in case or spacing is a warning; any other an error, or a warning when the caller
    asked for ``lenientDisplayValidation``."""
    if display is None:
        return
    if any(" ".join(display.split()) == " ".join(name.split()) for name in names):
        return
    folded = display.strip().casefold()
    if any(" ".join(folded.split()) == " ".join(name.casefold().split()) for name in names):
        check.warn(
            "invalid",
            f"Display {display!r} for {where} differs in case or spacing from {preferred!r}",
        )
        return
    text = f"Wrong display {display!r} for {where}: should be {preferred!r}"
    if lenient:
        check.warn("invalid", text)
    else:
        check.error("invalid", text)


def _check_status(check: _Check, where: str, concept: Any) -> None:
    """Inactive and deprecated concepts are valid codes, with a warning."""
    if concept.inactive:
        check.inactive = True
        check.warn("business-rule", f"The concept {where} is inactive")
    properties = dict(concept.properties)
    if properties.get(_DEPRECATED[0]) == _DEPRECATED[1] or any(
        name in properties and properties[name] != "false" for name in _DEPRECATION_PROPERTIES
    ):
        check.warn("business-rule", f"The concept {where} is deprecated")


def code_system_validate(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/codesystem-operation-validate-code.html"""
    codings = _codings_in(call)
    system = _text(call, "url") or _text(call, "system")
    version = _text(call, "version")
    lenient = _boolean(call, "lenientDisplayValidation")
    if _text(call, "code") is not None:
        codings = [
            {"system": system, "code": _text(call, "code"), "display": _text(call, "display")}
        ]
    if not codings:
        raise invalid("$validate-code needs code (with url), coding or codeableConcept")
    service = _service(call)
    failed: list[_Check] = []
    with service.read() as conn:
        for coding in codings:
            check = _Check()
            url = coding.get("system") or system
            code = coding.get("code")
            if not url or not isinstance(code, str):
                raise invalid("Each coding to validate needs a system and a code")
            if system and url != system:
                check.error("code-invalid", f"{url} is not the code system {system}")
                failed.append(check)
                continue
            found = service.code_system(conn, url, coding.get("version") or version)
            row = service.concept(conn, found, code)
            if row is None:
                check.error(
                    "code-invalid", f"Unknown code {code!r} in {url} version {found.version}"
                )
                failed.append(check)
                continue
            where = f"{url}#{code}"
            check.display = row.display or code
            _check_display(check, where, _names(row), row.display, coding.get("display"), lenient)
            _check_status(check, where, row)
            if check.errors:
                failed.append(check)
                continue
            return check.parameters()
    return failed[-1].parameters(failed[:-1])


# -- CodeSystem/$subsumes -----------------------------------------------------------------------


def subsumes(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/codesystem-operation-subsumes.html"""
    coding_a, coding_b = _coding(call, "codingA"), _coding(call, "codingB")
    system = _text(call, "system")
    code_a = _text(call, "codeA") or (coding_a or {}).get("code")
    code_b = _text(call, "codeB") or (coding_b or {}).get("code")
    for coding in (coding_a, coding_b):
        if coding and coding.get("system"):
            if system and coding["system"] != system:
                raise invalid("codingA and codingB must be of the same system")
            system = coding["system"]
    if not system or not code_a or not code_b:
        raise invalid("$subsumes needs system with codeA and codeB (or codingA and codingB)")
    check_code(code_a)
    check_code(code_b)
    service = _service(call)
    with service.read() as conn:
        found = service.code_system(conn, system, _text(call, "version"))
        for code in (code_a, code_b):
            if service.concept(conn, found, code) is None:
                raise FhirError(
                    404,
                    f"Code {code!r} is not in {system} version {found.version}",
                    code="not-found",
                )
        if code_a == code_b:
            outcome = "equivalent"
        elif store.is_ancestor(conn, found.key, code_a, code_b):
            outcome = "subsumes"
        elif store.is_ancestor(conn, found.key, code_b, code_a):
            outcome = "subsumed-by"
        else:
            outcome = "not-subsumed"
    return _parameters({"name": "outcome", "valueCode": outcome})


# -- ValueSet/$expand ---------------------------------------------------------------------------


def _value_set_of(call: OperationCall, service: Terminology) -> dict[str, Any]:
    parameter = _body_parameter(call, "valueSet")
    if parameter is not None:
        resource = parameter.get("resource")
        if not isinstance(resource, dict) or resource.get("resourceType") != "ValueSet":
            raise invalid("Parameter 'valueSet' must be a ValueSet resource")
        return resource
    if call.resource_id is not None:
        from fhirhub.sdk import read

        return read(call.hub, "ValueSet", call.resource_id)
    url = _text(call, "url")
    if not url:
        raise invalid("Give the value set: url, valueSet, or invoke on ValueSet/{id}")
    return service.value_set(url, _text(call, "valueSetVersion"))


def _designation(
    entry: Entry, designations: list[dict[str, Any]], language: str | None
) -> str | None:
    if not language:
        return entry.display
    for designation in designations:
        if (designation.get("language") or "").lower().startswith(language.lower()):
            return str(designation["value"])
    return entry.display


def _designation_element(designation: dict[str, Any], system: str) -> dict[str, Any]:
    out: dict[str, Any] = {"value": designation["value"]}
    if designation.get("language"):
        out["language"] = designation["language"]
    if designation.get("use"):
        out["use"] = {"system": system, "code": designation["use"]}
    return out


def expand_operation(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/valueset-operation-expand.html"""
    service = _service(call)
    value_set = _value_set_of(call, service)
    limit = service.settings.max_expansion
    options = Options(
        filter=_text(call, "filter"),
        count=_integer(call, "count", None, limit),
        offset=_integer(call, "offset", 0, 10_000_000) or 0,
        active_only=_boolean(call, "activeOnly"),
    )
    language = _text(call, "displayLanguage")
    with_designations = _boolean(call, "includeDesignations")
    nested_asked = _text(call, "excludeNested") is not None
    # Nested ``contains`` only when asked for (excludeNested=false) and the expansion is not
    # paged: a page of a tree has no meaning.
    nested = nested_asked and not _boolean(call, "excludeNested") and options.count is None
    result = cached_expansion(service, value_set, options)
    if options.count is None and result.total > limit:
        raise FhirError(
            400,
            f"The expansion has {result.total} codes, over the {limit} returned at once: "
            "page it with count and offset, or narrow it with filter",
            code="too-costly",
        )
    parameters: list[dict[str, Any]] = []
    if options.filter:
        parameters.append({"name": "filter", "valueString": options.filter})
    if options.count is not None:
        parameters.append({"name": "count", "valueInteger": options.count})
    parameters.append({"name": "offset", "valueInteger": options.offset})
    if language:
        parameters.append({"name": "displayLanguage", "valueCode": language})
    if with_designations:
        parameters.append({"name": "includeDesignations", "valueBoolean": True})
    if nested_asked:
        parameters.append({"name": "excludeNested", "valueBoolean": not nested})
    for url, version in result.used_systems:
        parameters.append({"name": "version", "valueUri": f"{url}|{version}"})
    contains = []
    with service.read() as conn:
        used = supplements.resolve(
            service, conn, supplements.requested(_texts(call, "useSupplement"), value_set)
        )
        for supplement in used:
            parameters.append(
                {"name": "used-supplement", "valueUri": f"{supplement.url}|{supplement.version}"}
            )
        items: list[tuple[str, str, dict[str, Any]]] = []
        for entry in result.entries:
            item: dict[str, Any] = {"system": entry.system, "code": entry.code}
            if entry.version:
                item["version"] = entry.version
            if entry.abstract:
                item["abstract"] = True
            if entry.inactive:
                item["inactive"] = True
            designations = json.loads(entry.designations or "[]")
            if used:
                designations += supplements.additions(
                    service, conn, used, entry.system, entry.code
                )[0]
            display = _designation(entry, designations, language)
            if display:
                item["display"] = display
            if with_designations and designations:
                item["designation"] = [_designation_element(d, entry.system) for d in designations]
            items.append((entry.system, entry.code, item))
        if nested:
            keys = {}
            for url, version in result.used_systems:
                found = service.find(conn, url, version)
                if found is not None:
                    keys[url] = found.key
            contains = supplements.nest(conn, keys, items)
        else:
            contains = [item for _, _, item in items]
    out: dict[str, Any] = {
        key: value_set[key]
        for key in ("id", "url", "version", "name", "title", "status")
        if key in value_set
    }
    out.setdefault("status", "active")
    expansion: dict[str, Any] = {
        "identifier": f"urn:uuid:{new_id()}",
        "timestamp": format_instant(_now_us()),
        "total": result.total,
        "offset": options.offset,
        "parameter": parameters,
    }
    if contains:
        expansion["contains"] = contains
    return {"resourceType": "ValueSet", **out, "expansion": expansion}


def cached_expansion(
    service: Terminology, value_set: dict[str, Any], options: Options
) -> Expansion:
    """The expansion, from :attr:`Terminology.expansions` for an implicit value set
    (``system?fhir_vs``, the typeahead's) of the latest loaded version: its answer depends
    only on that version and the options."""
    with service.read() as conn:
        key = _implicit_key(service, conn, value_set, options)
        cached = None if key is None else service.expansions.get(key)
        if cached is not None:
            return cached
        result = expand(service, conn, value_set, options)
    if key is not None:
        service.expansions.put(key, result)
    return result


def _implicit_key(
    service: Terminology, conn: Any, value_set: dict[str, Any], options: Options
) -> tuple[Any, ...] | None:
    url = value_set.get("url")
    compose = value_set.get("compose")
    if not isinstance(url, str) or "?fhir_vs" not in url or not isinstance(compose, dict):
        return None
    includes = compose.get("include")
    if set(compose) != {"include"} or not isinstance(includes, list) or len(includes) != 1:
        return None
    include = includes[0]
    if not isinstance(include, dict) or set(include) - {"system", "filter"}:
        return None
    system = include.get("system")
    if not isinstance(system, str):
        return None
    found = service.code_system(conn, system, None)
    return (
        found.key,
        found.version,
        found.loaded_at,
        json.dumps(compose, sort_keys=True),
        options.filter,
        options.count,
        options.offset,
        options.active_only,
        options.code,
    )


def _now_us() -> int:
    import time

    return time.time_ns() // 1000


# -- ValueSet/$validate-code --------------------------------------------------------------------


def value_set_validate(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/valueset-operation-validate-code.html"""
    service = _service(call)
    value_set = _value_set_of(call, service)
    codings = _codings_in(call)
    lenient = _boolean(call, "lenientDisplayValidation")
    if _text(call, "code") is not None:
        codings = [
            {
                "system": _text(call, "system"),
                "code": _text(call, "code"),
                "display": _text(call, "display"),
            }
        ]
    if not codings:
        raise invalid("$validate-code needs code (with system), coding or codeableConcept")
    failed: list[_Check] = []
    with service.read() as conn:
        for coding in codings:
            check = _Check()
            code = coding.get("code")
            if not isinstance(code, str):
                raise invalid("Each coding to validate needs a code")
            options = Options(count=1, code=(coding.get("system"), code))
            found = expand(service, conn, value_set, options)
            if not found.entries:
                check.error(
                    "code-invalid",
                    f"{coding.get('system') or ''}#{code} is not in value set "
                    f"{value_set.get('url')}",
                )
                failed.append(check)
                continue
            entry = found.entries[0]
            where = f"{entry.system}#{code}"
            check.display = entry.display or code
            # The concept's own details (designations, status properties) where its code
            # system is loaded; a code listed in the value set only has what it lists.
            concept = None
            version = service.find(conn, entry.system, entry.version)
            if version is not None:
                concept = service.concept(conn, version, code)
            names = _names(concept) if concept is not None else [entry.display or ""]
            if entry.display or concept is not None:
                _check_display(check, where, names, entry.display, coding.get("display"), lenient)
            if concept is not None:
                _check_status(check, where, concept)
            elif entry.inactive:
                check.inactive = True
                check.warn("business-rule", f"The concept {where} is inactive")
            if check.errors:
                failed.append(check)
                continue
            return check.parameters()
    return failed[-1].parameters(failed[:-1])


# -- ConceptMap/$translate ----------------------------------------------------------------------


def translate_operation(call: OperationCall) -> dict[str, Any]:
    """http://hl7.org/fhir/R4/conceptmap-operation-translate.html"""
    coding = _coding(call, "coding") or {}
    system = _text(call, "system") or coding.get("system")
    code = _text(call, "code") or coding.get("code")
    if not system or not code:
        raise invalid("$translate needs system and code (or a coding)")
    return translate(
        call.hub,
        system=system,
        code=code,
        url=_text(call, "url"),
        map_id=call.resource_id,
        source=_text(call, "source"),
        target=_text(call, "target"),
        target_system=_text(call, "targetsystem"),
        reverse=_boolean(call, "reverse"),
    )


def operations() -> list[Operation]:
    def op(
        name: str, handler: Any, types: tuple[str, ...], definition: str, instance: bool = False
    ) -> Operation:
        return Operation(
            name,
            handler,
            type_level=True,
            instance=instance,
            resource_types=types,
            description=f"FHIR R4 terminology: ${name}",
            definition_url=f"http://hl7.org/fhir/OperationDefinition/{definition}",
        )

    return [
        op("lookup", lookup, ("CodeSystem",), "CodeSystem-lookup"),
        op("subsumes", subsumes, ("CodeSystem",), "CodeSystem-subsumes"),
        op("expand", expand_operation, ("ValueSet",), "ValueSet-expand", instance=True),
        op(
            "translate", translate_operation, ("ConceptMap",), "ConceptMap-translate", instance=True
        ),
        op("validate-code", code_system_validate, ("CodeSystem",), "CodeSystem-validate-code"),
        op(
            "validate-code",
            value_set_validate,
            ("ValueSet",),
            "ValueSet-validate-code",
            instance=True,
        ),
    ]
