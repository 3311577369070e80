"""``POST /hl7/v2`` (and the plugin path ``/plugins/hl7/v2``) over the real ASGI app."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.adapters.hl7.conftest import fixture

ER7 = {"content-type": "x-application/hl7-v2+er7"}


def test_a_message_posted_to_either_path_is_acknowledged(client: TestClient) -> None:
    response = client.post("/hl7/v2", content=fixture("adt_a01.hl7"), headers=ER7)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("x-application/hl7-v2+er7")
    assert b"MSA|AA|CTRL-A01-1" in response.content
    again = client.post("/plugins/hl7/v2", content=fixture("adt_a01.hl7"), headers=ER7)
    assert again.status_code == 200 and b"duplicate" in again.content


def test_a_batch_is_answered_per_message_and_refusals_make_it_422(client: TestClient) -> None:
    messages = [fixture("siu_s12.hl7"), fixture("bar_p01.hl7")]
    body = b"FHS|^~\\&\rBHS|^~\\&\r" + b"".join(m.replace(b"\n", b"\r") for m in messages)
    body += b"BTS|2\rFTS|1\r"
    response = client.post("/hl7/v2", content=body, headers=ER7)
    assert response.status_code == 422
    assert b"MSA|AA|CTRL-SIU-1" in response.content and b"MSA|AR" in response.content
