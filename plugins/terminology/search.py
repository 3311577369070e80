"""The terminology search modifiers, answered for the store (``search_token_codes``).

``code:below=system|code`` stands for the code and every code under it in the loaded version
(``Condition?code:below=http://hl7.org/fhir/sid/icd-10-cm|E11``: every type 2 diabetes code),
``:above`` for the code and its ancestors, ``:in=url`` for the codes of the value set's
expansion and ``:not-in`` for their complement.

The answers are statements over the concept tables (:class:`CodeQuery`), not lists: the store
joins its token index to the closure table (``:below``/``:above``) or to the expansion's
statement (``:in``/``:not-in``) inside the search, so a chapter of 40,000 codes costs one
join, not a 40,000-item ``IN`` list, and is not limited. Only a value set some of whose
codes are taken as listed (an include of a system that is not loaded) is expanded here and
answered as codes, at most ``max_expansion`` of them.
"""

from __future__ import annotations

from sqlalchemy import String, literal, select, union_all

from fhirhub.plugins.terminology.expand import Options, code_queries, expand
from fhirhub.plugins.terminology.model import check_code
from fhirhub.plugins.terminology.service import Terminology
from fhirhub.plugins.terminology.tables import closure_table
from fhirhub.sdk import CodeQuery, FhirError, TokenCodes, TokenModifier, invalid


def token_codes(service: Terminology, request: TokenModifier) -> TokenCodes | None:
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
        closure = closure_table.c
        if request.modifier == "below":
            related = select(closure.code).where(
                closure.version_key == version.key, closure.ancestor == code
            )
        else:
            related = select(closure.ancestor).where(
                closure.version_key == version.key, closure.code == code
            )
        # The code itself and those related to it, in one statement: one ``IN`` the token
        # index answers per code.
        itself = select(literal(code, String(64)))
        return TokenCodes(queries=(CodeQuery(system, union_all(related, itself)),))
    if request.modifier in ("in", "not-in"):
        url, _, wanted = request.value.partition("|")
        if not url:
            raise invalid(f":{request.modifier} needs a ValueSet url")
        value_set = service.value_set(url, wanted or None)
        with service.read() as conn:
            queries = code_queries(service, conn, value_set)
            if queries is not None:
                return TokenCodes(
                    queries=tuple(CodeQuery(system, query) for system, query in queries)
                )
            limit = service.settings.max_expansion
            result = expand(service, conn, value_set, Options(count=limit + 1))
        if result.total > limit:
            raise _too_many(request, limit)
        return TokenCodes(tuple((entry.system, entry.code) for entry in result.entries))
    return None


def _too_many(request: TokenModifier, limit: int) -> FhirError:
    return FhirError(
        400,
        f"{request.parameter}:{request.modifier}={request.value} stands for more than {limit} "
        "codes (some of them listed in the value set, not read from a loaded code system); "
        "narrow it",
        code="too-costly",
    )
