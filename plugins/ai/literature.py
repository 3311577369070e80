"""External literature, as tools: NCBI E-utilities (PubMed), ClinicalTrials.gov API v2 and
MedlinePlus Connect. Real HTTP clients (``httpx``) with configurable base URLs; a tool whose
base URL is not set is not offered to the model at all.

What leaves the hub: the search terms only, with the conversation patient's identifiers and
anything shaped like an identifier removed first (:class:`.redact.Redactor`).
"""

from __future__ import annotations

from typing import Any

import httpx

from fhirhub.sdk import FhirError, invalid

#: MedlinePlus Connect's code systems, by the short names the tool accepts.
MEDLINEPLUS_SYSTEMS = {
    "icd10": "2.16.840.1.113883.6.90",
    "snomed": "2.16.840.1.113883.6.96",
    "rxnorm": "2.16.840.1.113883.6.88",
    "loinc": "2.16.840.1.113883.6.1",
}
TIMEOUT_S = 10.0


def _get(url: str, params: dict[str, Any]) -> Any:
    try:
        response = httpx.get(url, params=params, timeout=TIMEOUT_S)
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as error:
        raise FhirError(502, f"{url} did not answer usefully: {error}", code="transient") from error


def pubmed(base_url: str, term: str, limit: int = 5) -> list[dict[str, Any]]:
    """Articles matching ``term``: esearch for ids, then esummary for their titles."""
    base = base_url.rstrip("/")
    found = _get(
        f"{base}/esearch.fcgi",
        {"db": "pubmed", "term": term, "retmode": "json", "retmax": str(limit)},
    )
    ids = [str(i) for i in (found.get("esearchresult") or {}).get("idlist") or []][:limit]
    if not ids:
        return []
    summary = _get(
        f"{base}/esummary.fcgi", {"db": "pubmed", "id": ",".join(ids), "retmode": "json"}
    )
    result = summary.get("result") or {}
    return [
        {
            "pmid": pmid,
            "title": (result.get(pmid) or {}).get("title"),
            "journal": (result.get(pmid) or {}).get("source"),
            "date": (result.get(pmid) or {}).get("pubdate"),
            "url": f"https://pubmed.ncbi.nlm.nih.gov/{pmid}/",
        }
        for pmid in ids
    ]


def clinical_trials(base_url: str, term: str, limit: int = 5) -> list[dict[str, Any]]:
    found = _get(
        f"{base_url.rstrip('/')}/studies",
        {"query.term": term, "pageSize": str(limit), "format": "json"},
    )
    studies = []
    for study in (found.get("studies") or [])[:limit]:
        protocol = study.get("protocolSection") or {}
        ident = protocol.get("identificationModule") or {}
        studies.append(
            {
                "nct_id": ident.get("nctId"),
                "title": ident.get("briefTitle"),
                "status": (protocol.get("statusModule") or {}).get("overallStatus"),
                "url": f"https://clinicaltrials.gov/study/{ident.get('nctId')}",
            }
        )
    return studies


def medlineplus(base_url: str, code: str, system: str) -> list[dict[str, Any]]:
    oid = MEDLINEPLUS_SYSTEMS.get(system.lower())
    if oid is None:
        raise invalid(f"system must be one of {', '.join(MEDLINEPLUS_SYSTEMS)}")
    found = _get(
        base_url,
        {
            "mainSearchCriteria.v.cs": oid,
            "mainSearchCriteria.v.c": code,
            "knowledgeResponseType": "application/json",
        },
    )
    entries = (found.get("feed") or {}).get("entry") or []
    return [
        {
            "title": (entry.get("title") or {}).get("_value"),
            "url": ((entry.get("link") or [{}])[0]).get("href"),
            "summary": ((entry.get("summary") or {}).get("_value") or "")[:500],
        }
        for entry in entries[:5]
    ]
