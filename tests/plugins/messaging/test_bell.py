"""The notification bell's API: unread counts and the latest messages with their sender's
name, thread and time; marking everything read; each user sees only their own."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from fhirhub.core.hub import Hub
from fhirhub.plugins.messaging import notify
from tests.plugins.messaging.conftest import as_, message


def bell(client: TestClient, user: str) -> dict[str, Any]:
    response = client.get("/plugins/messaging/api/notifications", headers=as_(user))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_the_bell_lists_the_latest_with_sender_thread_and_time(
    hub: Hub, client: TestClient, practitioners: dict[str, str]
) -> None:
    first = client.post(
        "/fhir/Communication",
        json=message(practitioners["bob"], "Can you see Mr Smith?"),
        headers=as_("alice"),
    ).json()
    reply = message(
        practitioners["bob"],
        "He is in bed 4",
        sent="2026-12-07T08:05:00Z",
        inResponseTo=[{"reference": f"Communication/{first['id']}"}],
    )
    client.post("/fhir/Communication", json=reply, headers=as_("alice"))
    notify(hub, "bob", "notification", "Lab system down at 22:00")
    seen = bell(client, "bob")
    assert (seen["unread"], seen["notifications"]) == (3, 1)
    texts = [item["text"] for item in seen["items"]]
    assert texts[1:] == ["He is in bed 4", "Can you see Mr Smith?"]
    newest = seen["items"][0]
    assert (newest["category"], newest["sender_name"], newest["unread"]) == (
        "notification",
        "fhirhub",
        True,
    )
    assert seen["items"][1]["sender_name"] == "Alice"
    assert seen["items"][1]["thread"] == seen["items"][2]["thread"] == first["id"]
    assert seen["items"][1]["sent"] == "2026-12-07T08:05:00Z"
    # Other users: alice received nothing; carol, of another tenant, sees nothing of it.
    assert bell(client, "alice")["items"] == []
    assert bell(client, "carol") == {
        "available": True,
        "unread": 0,
        "notifications": 0,
        "items": [],
    }
    assert client.post("/plugins/messaging/api/read-all", headers=as_("carol")).json() == {
        "read": 0
    }
    assert bell(client, "bob")["unread"] == 3
    assert client.post("/plugins/messaging/api/read-all", headers=as_("bob")).json() == {"read": 3}
    after = bell(client, "bob")
    assert after["unread"] == 0 and not any(item["unread"] for item in after["items"])


def test_the_shell_shows_the_bell_on_every_page(client: TestClient) -> None:
    for path in ("/", "/ui/patients", "/ui/page?path=/plugins/messaging/page/"):
        html = client.get(path).text
        assert 'id="topbar-messaging-bell"' in html, path
        assert "/plugins/messaging/page/bell.js" in html
    script = client.get("/plugins/messaging/page/bell.js")  # public: it holds no data
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert client.get("/plugins/messaging/api/notifications").status_code == 401
