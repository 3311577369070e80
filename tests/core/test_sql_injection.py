"""SQL injection: hostile values in every kind of search parameter, on both backends.

Every search value reaches the database as a bound parameter (SQLAlchemy Core, no string
formatting of values anywhere). This test is the proof: for each parameter type (string,
token, reference, date, number, quantity, uri, composite, special) and the result parameters
(``_id``, ``_lastUpdated``, ``_sort``, ``_include``, ``_revinclude``, chaining, ``_has``,
unknown ones such as ``_text``) it sends classic payloads and asserts no 500, no extra
results, and every table intact afterwards.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text

from fhirhub.core.hub import Hub
from tests.core.fhir_samples import observation, patient

FHIR = {"Content-Type": "application/fhir+json"}

PAYLOADS = [
    "' OR 1=1--",
    "' OR '1'='1",
    '"; DROP TABLE resource_current;--',
    "'); DROP TABLE resource_version;--",
    "%' UNION SELECT content, content FROM resource_current--",
    "1 UNION SELECT NULL--",
    "x' AND (SELECT pg_sleep(1)) IS NULL--",
    "%",
    "_",
    "\\",
    "*",
    "a\x00b",
    "\x00",
    "A" * 20_000,
    "\u02bc OR 1=1--",  # a unicode apostrophe some normalisers fold to '
    "ｓｅｌｅｃｔ　＊",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ \u202e",
]

PLAIN = ("{}",)
DATED = ("{}", "ge{}")  # a prefix must not let a payload past the value parser
CODED = ("{}", "http://loinc.org|{}", "{}|x")  # system|code: either half
REFERENCED = ("{}", "Patient/{}")
COMPOSITE = ("8867-4${}", "{}$5")

#: (resource type, parameter, value shapes): filters, which must match nothing for a payload.
FILTERS = [
    ("Patient", "name", PLAIN),  # string
    ("Patient", "family:exact", PLAIN),
    ("Patient", "family:contains", PLAIN),
    ("Patient", "address", PLAIN),
    ("Patient", "gender", PLAIN),  # token
    ("Patient", "identifier", CODED),
    ("Patient", "identifier:text", PLAIN),
    ("Observation", "code", CODED),
    ("Observation", "code:in", PLAIN),
    ("Observation", "subject", REFERENCED),  # reference
    ("Observation", "subject:Patient", PLAIN),
    ("Patient", "birthdate", DATED),  # date
    ("Observation", "date", DATED),
    ("RiskAssessment", "probability", DATED),  # number
    ("Observation", "value-quantity", ("{}", "5.4|http://unitsofmeasure.org|{}", "gt{}")),
    ("ValueSet", "url", PLAIN),  # uri
    ("ValueSet", "url:below", PLAIN),
    ("Observation", "code-value-quantity", COMPOSITE),  # composite
    ("Location", "near", ("{}", "42.3|{}|10|km")),  # special
    ("Patient", "_id", PLAIN),
    ("Patient", "_lastUpdated", DATED),
    ("Patient", "_tag", CODED),
    ("Patient", "_security", PLAIN),
    ("Patient", "_profile", PLAIN),
    ("Observation", "subject:Patient.name", PLAIN),  # chained
    ("Observation", "subject.identifier", CODED),
    ("Patient", "_has:Observation:patient:code", CODED),  # reverse chained
]
#: Parameters that shape results rather than filter them: at most every resource comes back.
SHAPERS = [
    ("Patient", "_sort", PLAIN),
    ("Patient", "_include", PLAIN),
    ("Observation", "_include", ("{}", "Observation:{}")),
    ("Patient", "_revinclude", ("{}", "Observation:{}")),
    ("Patient", "_elements", PLAIN),
    ("Patient", "_summary", PLAIN),
    ("Patient", "_count", PLAIN),
    ("Patient", "_text", PLAIN),  # unknown to this server: ignored (lenient) or refused (strict)
    ("Patient", "_content", PLAIN),
    ("Patient", "_filter", PLAIN),
    ("Patient", "_list", PLAIN),
    ("Patient", "no-such-parameter", PLAIN),
    ("Patient", f"{PAYLOADS[2]}", PLAIN),  # a hostile parameter name
]


#: Queues the dispatcher drains on its own schedule (pruned behind the slowest cursor): their
#: counts change while a test runs without anything being written.
TRANSIENT = {"outbox", "dispatch_cursor"}


def table_counts(hub: Hub) -> dict[str, int]:
    with hub.store.read() as conn:
        names = inspect(conn).get_table_names()
        return {
            name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in names
            if name not in TRANSIENT
        }


def matches(bundle: dict[str, Any]) -> list[str]:
    return [
        e["resource"]["id"]
        for e in bundle.get("entry", [])
        if e.get("search", {}).get("mode") == "match"
    ]


def test_injection_payloads_in_every_search_parameter_type(client: TestClient, hub: Hub) -> None:
    pid = client.post("/fhir/Patient", content=orjson.dumps(patient()), headers=FHIR).json()["id"]
    client.post("/fhir/Patient", content=orjson.dumps(patient(family="Other")), headers=FHIR)
    client.post(
        "/fhir/Observation", content=orjson.dumps(observation(f"Patient/{pid}")), headers=FHIR
    )
    everything = {"Patient": 2, "Observation": 1}
    # The plugins' consumers (the AI index, ...) fill their own tables after the commit: let
    # them finish, so that only what the payloads might do changes the counts.
    assert hub.dispatcher is not None and hub.dispatcher.wait_idle(30)
    before = table_counts(hub)

    failures: list[str] = []
    for resource_type, name, shapes in FILTERS + SHAPERS:
        filtering = (resource_type, name, shapes) in FILTERS
        for payload in PAYLOADS:
            for value in (shape.format(payload) for shape in shapes):
                # Unknown parameters are ignored by default and refused with handling=strict.
                prefer = {"Prefer": "handling=strict"} if not filtering and payload == "%" else {}
                response = client.get(
                    f"/fhir/{resource_type}", params={name: value}, headers=prefer
                )
                where = f"{resource_type}?{name}={value[:60]!r}"
                if response.status_code >= 500:
                    failures.append(f"{where}: {response.status_code} {response.text[:200]}")
                    continue
                if response.status_code != 200:
                    assert response.json()["resourceType"] == "OperationOutcome", where
                    continue
                found = matches(response.json())
                if filtering and found:
                    failures.append(f"{where}: matched {found}")
                if len(found) > everything.get(resource_type, 0):
                    failures.append(f"{where}: {len(found)} results")
    assert not failures, "\n".join(failures[:40])

    # POST _search (a form body) reaches the same code: a sample.
    for payload in PAYLOADS[:6]:
        response = client.post(
            "/fhir/Patient/_search",
            data={"name": payload, "_sort": payload},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code < 500 and matches(response.json()) == []

    # A NUL in a form body never reaches SQLite's LIKE (which would stop at it and match all).
    for name in ("family:contains", "name", "identifier"):
        response = client.post(
            "/fhir/Patient/_search",
            data={name: "\x00"},
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400, response.text
        assert "NUL" in response.json()["issue"][0]["diagnostics"]

    assert table_counts(hub) == before  # nothing dropped, nothing written
    assert client.get(f"/fhir/Patient/{pid}").status_code == 200


@pytest.mark.parametrize("payload", PAYLOADS[:8])
def test_injection_payloads_in_ids_and_paths(client: TestClient, hub: Hub, payload: str) -> None:
    before = table_counts(hub)
    for path in (
        f"/fhir/Patient/{payload}",
        f"/fhir/Patient/{payload}/_history",
        f"/fhir/Patient/x/_history/{payload}",
        f"/fhir/{payload}",
        f"/fhir/Patient/{payload}/Observation",
    ):
        response = client.get(path.replace("#", "%23").replace("?", "%3F"))
        assert response.status_code in (400, 404, 410), (path, response.text)
    assert table_counts(hub) == before
