"""The dashboard's routes: the page and translations are public (no data in them); the chart,
Excel export, language preference and live stream need a signed-in user of the tenant."""

from __future__ import annotations

import io
import re
from pathlib import Path

from fastapi.testclient import TestClient
from openpyxl import load_workbook

from fhirhub.core.hub import Hub
from fhirhub.plugins.vitals.i18n import messages
from tests.plugins.vitals.conftest import as_, new_patient, post_vitals, settle, vitals_bundle

STATIC = Path(__file__).resolve().parents[3] / "plugins" / "vitals" / "static"


def test_page_and_translations_are_public_the_data_is_not(client: TestClient) -> None:
    page = client.get("/plugins/vitals/ward/")
    assert page.status_code == 200 and "Ward vitals" in page.text
    assert client.get("/plugins/vitals/ward/static/dashboard.js").status_code == 200
    assert client.get("/plugins/vitals/ward/static/../__init__.py").status_code == 404
    spanish = client.get("/plugins/vitals/ward/i18n/es.json").json()
    assert spanish["Acknowledge"] == "Confirmar"
    assert client.get("/plugins/vitals/ward/i18n/xx.json").status_code == 404
    assert client.get("/plugins/vitals/api/board").status_code == 401


def test_every_interface_text_has_a_spanish_translation() -> None:
    html = (STATIC / "dashboard.html").read_text()
    script = (STATIC / "dashboard.js").read_text()
    texts = set(re.findall(r'data-i18n="([^"]+)"', html)) | set(
        re.findall(r'\bt\("([^"]+)"\)', script)
    )
    labels = set(
        re.findall(r'^\s+\w+: "([^"]+)",?', script.split("const LABELS")[1].split("};")[0], re.M)
    )
    missing = sorted((texts | labels) - set(messages("es")))
    assert not missing, missing


def test_language_is_remembered_per_user(client: TestClient) -> None:
    assert (
        client.get("/plugins/vitals/api/preferences", headers=as_("nurse-a")).json()["language"]
        == "en"
    )
    response = client.put(
        "/plugins/vitals/api/preferences", json={"language": "es"}, headers=as_("nurse-a")
    )
    assert response.status_code == 200
    assert (
        client.put(
            "/plugins/vitals/api/preferences", json={"language": "xx"}, headers=as_("nurse-a")
        ).status_code
        == 400
    )
    assert (
        client.get("/plugins/vitals/api/preferences", headers=as_("nurse-a")).json()["language"]
        == "es"
    )
    assert (
        client.get("/plugins/vitals/api/preferences", headers=as_("nurse-b")).json()["language"]
        == "en"
    )


def test_chart_trend_and_excel_export(client: TestClient, hub: Hub) -> None:
    patient = new_patient(client, "nurse-a")
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(
            patient,
            rr=16,
            spo2=97,
            o2_flow=0,
            sbp=125,
            pulse=72,
            acvpu="A",
            temp=36.8,
            when="2026-01-05T08:00:00Z",
        ),
    )
    post_vitals(
        client,
        "nurse-a",
        vitals_bundle(
            patient,
            rr=22,
            spo2=95,
            o2_flow=0,
            sbp=105,
            pulse=95,
            acvpu="A",
            temp=38.3,
            when="2026-01-05T10:00:00Z",
        ),
    )
    settle(hub)
    chart = client.get(
        f"/plugins/vitals/api/patients/{patient}/chart", headers=as_("nurse-a")
    ).json()
    assert [s["total"] for s in chart["scores"]] == [0, 6]
    assert chart["trend"]["pulse"] == 11.5  # (95 - 72) / 2 h
    assert chart["trend"]["score"] == 3.0
    assert chart["rows"]["respiration"]["2026-01-05T10:00:00+00:00"] == {"value": "22", "points": 2}
    assert (
        client.get(
            f"/plugins/vitals/api/patients/{patient}/chart", headers=as_("nurse-b")
        ).status_code
        == 404
    )
    response = client.get(
        f"/plugins/vitals/api/patients/{patient}/export.xlsx", headers=as_("nurse-a")
    )
    assert response.status_code == 200
    book = load_workbook(io.BytesIO(response.content))
    assert book.sheetnames == ["Vitals", "Scores"]
    totals = [
        row[3] for row in book["Scores"].iter_rows(min_row=2, values_only=True) if row[2] == "NEWS2"
    ]
    assert sorted(totals) == [0, 6]
    board = client.get("/plugins/vitals/api/board", headers=as_("nurse-a")).json()
    (row,) = board["patients"]
    assert (row["news2"], row["previous"], row["trend"], row["risk"]) == (6, 0, "up", "medium")
