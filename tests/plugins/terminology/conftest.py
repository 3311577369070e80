"""One hub per module with the terminology plugin, two tenants, callers by header, and a subset
of ICD-10-CM (four chapters' worth of blocks) loaded from the package's own data.

The package is parsed once per session (a few seconds); the tests that compare with it
use the whole parsed tree without a database, the HTTP tests a subset small enough to load
in a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub, build_hub
from fhirhub.plugins.terminology import icd10cm
from fhirhub.plugins.terminology.model import CodeSystemData
from fhirhub.plugins.terminology.service import service_of
from fhirhub.plugins.terminology.store import write_code_system
from fhirhub.sdk import Access, hookimpl, parse_scopes
from tests import backends
from tests.conftest import make_settings
from tests.tenants import add_tenants

pytestmark = pytest.mark.xdist_group("terminology")

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
#: The ICD-10-CM subtrees the HTTP tests load (with their ancestors).
SUBSET_ROOTS = ("A00-A09", "B99", "E08-E13", "S50-S59", "T36-T50")

CALLERS: dict[str, Access] = {
    "admin": Access(
        "user:admin", roles=frozenset({"super_admin"}), scopes=parse_scopes("user/*.cruds")
    ),
    "clinician-a": Access(
        "user:clin-a",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "clinician-b": Access(
        "user:clin-b",
        tenant="org-b",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    "org-admin-a": Access(
        "user:oa",
        tenant="org-a",
        roles=frozenset({"org_admin", "super_admin"}),
        scopes=parse_scopes("user/*.cruds"),
    ),
    # A patient-facing app may read terminology too (its scopes name the types).
    "patient-app": Access(
        "user:pat",
        tenant="org-a",
        roles=frozenset({"patient"}),
        scopes=parse_scopes("patient/*.rs user/CodeSystem.rs user/ValueSet.rs"),
        patient="p1",
    ),
    "no-terminology": Access(
        "user:x",
        tenant="org-a",
        roles=frozenset({"clinician"}),
        scopes=parse_scopes("user/Patient.rs"),
    ),
}


class HeaderAuthenticator:
    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return CALLERS.get(name) if name else None


@pytest.fixture(scope="session")
def icd_package() -> CodeSystemData:
    return icd10cm.from_package()


def subset(data: CodeSystemData, roots: tuple[str, ...] = SUBSET_ROOTS) -> CodeSystemData:
    by_code = {c.code: c for c in data.concepts}

    def chain(code: str) -> list[str]:
        out = [code]
        while by_code[out[-1]].parents:
            out.append(by_code[out[-1]].parents[0])
        return out

    kept = [c for c in data.concepts if any(r in chain(c.code) for r in roots)]
    codes = {c.code for c in kept}
    for root in roots:
        codes.update(chain(root))
    return CodeSystemData(
        url=data.url,
        version=data.version,
        concepts=[c for c in data.concepts if c.code in codes],
        name=data.name,
        title=data.title,
        source=data.source,
    )


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, icd_package: CodeSystemData) -> Iterator[Hub]:
    folder = tmp_path_factory.mktemp("terminology")
    template = backends.sqlite_template(folder)
    url = backends.fresh_sqlite_url(template, folder / "hub.db")
    settings = make_settings(url, folder, auth="on", listeners=False, plugins="-mpi")
    hub = build_hub(settings, extra_plugins=[HeaderAuthenticator()])
    add_tenants(hub, "org-a", "org-b")
    write_code_system(service_of(hub).db, subset(icd_package))
    yield hub
    hub.close()


@pytest.fixture(scope="module")
def client(hub: Hub) -> Iterator[TestClient]:
    from fhirhub.core.http.app import create_app

    with TestClient(create_app(hub=hub), base_url="http://testserver") as test_client:
        yield test_client


def as_caller(client: TestClient, name: str) -> dict[str, str]:
    return {"X-Test-Caller": name}


def parameter(parameters: dict[str, Any], name: str) -> Any:
    """The value of the first parameter called ``name`` (its value[x] or its parts)."""
    for item in parameters.get("parameter", []):
        if item["name"] == name:
            for key, value in item.items():
                if key.startswith("value"):
                    return value
            return item.get("part")
    return None


def properties(parameters: dict[str, Any], code: str) -> list[Any]:
    out = []
    for item in parameters.get("parameter", []):
        if item["name"] != "property":
            continue
        parts = {p["name"]: p for p in item["part"]}
        if parts["code"]["valueCode"] == code:
            value = parts["value"]
            out.append(next(v for k, v in value.items() if k.startswith("value")))
    return out


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path
