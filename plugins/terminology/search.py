"""The terminology search modifiers, answered for the store (``search_token_codes``).

``code:below=system|code`` stands for the code and every code under it in the loaded version
(``Condition?code:below=http://hl7.org/fhir/sid/icd-10-cm|E11``: every type 2 diabetes code),
``:above`` for the code and its ancestors, ``:in=url`` for the codes of the value set's
expansion and ``:not-in`` for their complement. The store matches the codes in its token index.
"""

from __future__ import annotations

from fhirhub.plugins.terminology import store
from fhirhub.plugins.terminology.expand import Options, expand
from fhirhub.plugins.terminology.model import check_code
from fhirhub.plugins.terminology.service import Terminology
from fhirhub.sdk import FhirError, TokenCodes, TokenModifier, invalid


def token_codes(service: Terminology, request: TokenModifier) -> TokenCodes | None:
    limit = service.settings.max_expansion
    if request.modifier in ("below", "above"):
        system, bar, code = request.value.rpartition("|")
        if not bar or not system:
            raise invalid(
                f":{request.modifier} needs system|code (the code system whose hierarchy "
                f"applies), not {request.value!r}"
            )
        check_code(code)
        with service.read() as conn:
            version = service.code_system(conn, system, None)
            if request.modifier == "below":
                related = store.descendants(conn, version.key, code, limit + 1)
            else:
                related = store.ancestors(conn, version.key, code)
        if len(related) > limit:
            raise _too_many(request, limit)
        return TokenCodes(tuple((system, c) for c in [code, *related]))
    if request.modifier in ("in", "not-in"):
        url, _, wanted = request.value.partition("|")
        if not url:
            raise invalid(f":{request.modifier} needs a ValueSet url")
        value_set = service.value_set(url, wanted or None)
        with service.read() as conn:
            result = expand(service, conn, value_set, Options(count=limit + 1))
        if result.total > limit:
            raise _too_many(request, limit)
        return TokenCodes(tuple((entry.system, entry.code) for entry in result.entries))
    return None


def _too_many(request: TokenModifier, limit: int) -> FhirError:
    return FhirError(
        400,
        f"{request.parameter}:{request.modifier}={request.value} stands for more than {limit} "
        "codes; narrow it",
        code="too-costly",
    )
