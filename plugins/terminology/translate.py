"""``ConceptMap/$translate`` over the ConceptMap resources stored in the hub
(http://hl7.org/fhir/R4/conceptmap-operation-translate.html)."""

from __future__ import annotations

from typing import Any

from fhirhub.sdk import Hub, invalid, read, search

#: Equivalences that are a translation (``unmatched`` and ``disjoint`` say there is none).
_MATCHING = frozenset(
    {"relatedto", "equivalent", "equal", "wider", "subsumes", "narrower", "specializes", "inexact"}
)
#: How an equivalence reads in the reverse direction.
_REVERSE = {
    "wider": "narrower",
    "narrower": "wider",
    "subsumes": "specializes",
    "specializes": "subsumes",
}


def _maps(
    hub: Hub, url: str | None, map_id: str | None, source: str | None, target: str | None
) -> list[dict[str, Any]]:
    if map_id is not None:
        return [read(hub, "ConceptMap", map_id)]
    params: dict[str, str] = {"_count": "50"}
    if url:
        params["url"] = url
    if source:
        params["source-uri"] = source
    if target:
        params["target-uri"] = target
    return search(hub, "ConceptMap", params)


def translate(
    hub: Hub,
    *,
    system: str,
    code: str,
    url: str | None,
    map_id: str | None,
    source: str | None,
    target: str | None,
    target_system: str | None,
    reverse: bool,
) -> dict[str, Any]:
    """The matches of ``system|code`` in the applicable maps, as a Parameters resource."""
    if len(code) > 256:
        raise invalid("The code to translate is too long")
    matches: list[dict[str, Any]] = []
    for concept_map in _maps(hub, url, map_id, source, target):
        source_ref = f"{concept_map.get('url', '')}"
        for group in concept_map.get("group") or []:
            group_source, group_target = group.get("source"), group.get("target")
            if reverse:
                group_source, group_target = group_target, group_source
            if group_source != system:
                continue
            if target_system and group_target != target_system:
                continue
            for element in group.get("element") or []:
                for item in element.get("target") or []:
                    if reverse:
                        if item.get("code") != code:
                            continue
                        found_code, found_display = element.get("code"), element.get("display")
                    else:
                        if element.get("code") != code:
                            continue
                        found_code, found_display = item.get("code"), item.get("display")
                    equivalence = item.get("equivalence", "equivalent")
                    if reverse:
                        equivalence = _REVERSE.get(equivalence, equivalence)
                    concept = {"system": group_target, "code": found_code}
                    if found_display:
                        concept["display"] = found_display
                    matches.append(
                        {
                            "name": "match",
                            "part": [
                                {"name": "equivalence", "valueCode": equivalence},
                                *(
                                    [{"name": "concept", "valueCoding": concept}]
                                    if found_code
                                    else []
                                ),
                                {"name": "source", "valueUri": source_ref},
                            ],
                        }
                    )
    result = any(
        part.get("valueCode") in _MATCHING
        for match in matches
        for part in match["part"]
        if part["name"] == "equivalence"
    )
    out: list[dict[str, Any]] = [{"name": "result", "valueBoolean": result}]
    if not result:
        out.append({"name": "message", "valueString": f"No translation of {system}#{code} found"})
    return {"resourceType": "Parameters", "parameter": out + matches}
