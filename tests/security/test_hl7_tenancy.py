"""HL7 v2 feeds and tenants: each sender writes for one tenant only, over real MLLP sockets and
HTTP; an unknown sender is refused with AR and leaves nothing behind; transport failures keep
dead letters only for accepted senders, within a quota."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.adapters.hl7.mllp_server import KEPT_PARTIAL_BYTES, MllpServer, frame
from fhirhub.adapters.hl7.parsing import parse
from fhirhub.adapters.hl7.processing import handle
from fhirhub.adapters.hl7.senders import DeadLetterQuota, Source
from fhirhub.core.access import Access, parse_scopes
from fhirhub.core.hookspecs import hookimpl
from fhirhub.core.hub import Hub, build_hub
from fhirhub.sdk import SYSTEM, acting_as, system_for, tenant_of, transaction
from tests.conftest import make_settings
from tests.tenants import add_tenants

SENDERS = {"ADT@NORTH": "north", "*@SOUTH": "south"}
MRN = "urn:oid:1.2.3.4"


def adt(control: str, mrn: str, family: str, *, app: str = "ADT", facility: str = "NORTH") -> bytes:
    return (
        f"MSH|^~\\&|{app}|{facility}|HUB|HUB|20240301120000||ADT^A08^ADT_A01|{control}|P|2.5.1\r"
        "EVN|A08|20240301120000\r"
        f"PID|1||{mrn}^^^MRN&{MRN}&ISO^MR||{family}^Ann||19700101|F\r"
        "PV1|1|I\r"
    ).encode()


def make_hub(
    database_url: str, tmp_path: Path, extra_plugins: list[Any] | None = None, **hl7: Any
) -> Hub:
    config = {"hl7": {"senders": SENDERS, **hl7}}
    settings = make_settings(
        database_url,
        tmp_path,
        listeners=False,
        plugin_config=config,
        auth="on" if extra_plugins else "off",
    )
    hub = build_hub(settings, extra_plugins=extra_plugins)
    add_tenants(hub, "north", "south")
    return hub


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    hub = make_hub(database_url, tmp_path)
    yield hub
    hub.store.engine.dispose()


def patients(hub: Hub) -> list[dict[str, Any]]:
    with acting_as(SYSTEM), transaction(hub) as tx:
        return tx.search("Patient", {})


def tasks(hub: Hub) -> list[dict[str, Any]]:
    with acting_as(SYSTEM), transaction(hub) as tx:
        return tx.search("Task", {})


def test_a_feed_never_matches_or_relabels_another_tenants_patient(hub: Hub) -> None:
    south = handle(
        hub, adt("S-1", "MRN-1", "South", facility="SOUTH"), source=Source(), check_duplicates=True
    )
    assert south.code == "AA"
    (stored,) = patients(hub)
    assert tenant_of(stored) == "south"
    # North's feed sends the same identifier: a new north patient, south's untouched.
    north = handle(hub, adt("N-1", "MRN-1", "North"), source=Source())
    assert north.code == "AA"
    by_tenant = {tenant_of(p): p for p in patients(hub)}
    assert set(by_tenant) == {"north", "south"}
    assert by_tenant["south"]["name"][0]["family"] == "South"
    assert by_tenant["south"]["meta"]["versionId"] == stored["meta"]["versionId"]
    assert by_tenant["north"]["name"][0]["family"] == "North"
    # South's own next update still finds (and keeps) its patient.
    assert (
        handle(hub, adt("S-2", "MRN-1", "Souther", facility="SOUTH"), source=Source()).code == "AA"
    )
    with acting_as(system_for("south")), transaction(hub) as tx:
        (mine,) = tx.search("Patient", {})
    assert mine["name"][0]["family"] == "Souther"
    assert tenant_of(mine) == "south"


def test_an_unknown_sender_is_refused_with_AR_and_leaves_nothing(hub: Hub) -> None:
    outcome = handle(
        hub, adt("X-1", "MRN-9", "Nobody", app="EVIL", facility="ELSEWHERE"), source=Source()
    )
    assert outcome.code == "AR"
    err = next(s for s in parse(outcome.ack).segments if s.name == "ERR")
    assert err.raw(2).startswith("MSH^1^4")  # ERR-2: MSH-4, the sending facility
    assert "not configured" in outcome.ack.decode()
    assert patients(hub) == [] and tasks(hub) == []
    # Unparseable bytes from an unknown sender: AR, no dead letter either.
    broken = b"MSH|^~\\&|EVIL|ELSEWHERE|HUB|HUB|2024||ADT^A08|X-2|P|2.5.1\rPID|\xff\x00"
    assert handle(hub, broken + b"\rZZZ|" * 3, source=Source()).code == "AR"
    assert tasks(hub) == []


def test_a_system_update_without_a_label_keeps_the_resource_in_its_tenant(hub: Hub) -> None:
    handle(hub, adt("S-1", "MRN-1", "South", facility="SOUTH"), source=Source())
    (stored,) = patients(hub)
    content = {k: v for k, v in stored.items() if k != "meta"}
    content["name"] = [{"family": "Edited"}]
    with acting_as(SYSTEM), transaction(hub) as tx:
        tx.update(content)
    (after,) = patients(hub)
    assert after["name"][0]["family"] == "Edited"
    assert tenant_of(after) == "south"


def test_same_sender_and_control_id_in_two_tenants_are_two_messages(
    database_url: str, tmp_path: Path
) -> None:
    hub = make_hub(database_url, tmp_path, senders={})
    try:
        north_admin = Access("user:na", tenant="north", roles=frozenset({"org_admin"}))
        south_admin = Access("user:sa", tenant="south", roles=frozenset({"org_admin"}))
        raw = adt("C-1", "MRN-1", "Same", app="EHR", facility="SHARED")
        assert handle(hub, raw, source=Source(caller=north_admin)).code == "AA"
        second = handle(hub, raw, source=Source(caller=south_admin))
        assert second.code == "AA" and not second.duplicate
        assert sorted(tenant_of(p) or "" for p in patients(hub)) == ["north", "south"]
        # A retransmission within one tenant is still recognised.
        assert handle(hub, raw, source=Source(caller=south_admin)).duplicate
    finally:
        hub.store.engine.dispose()


class HeaderCallers:
    CALLERS = {
        "clin-north": Access(
            "user:cn",
            tenant="north",
            roles=frozenset({"clinician"}),
            scopes=parse_scopes("user/*.cruds"),
        ),
        "admin-north": Access("user:an", tenant="north", roles=frozenset({"org_admin"})),
        "backend-south": Access(
            "client:lis", tenant="south", scopes=parse_scopes("system/*.cruds")
        ),
    }

    @hookimpl
    def authenticate_request(self, request: Any, hub: Hub) -> Access | None:
        name = request.headers.get("x-test-caller")
        return self.CALLERS.get(name) if name else None


def test_http_feed_needs_a_feeding_caller_and_stays_in_its_tenant(
    database_url: str, tmp_path: Path
) -> None:
    from fhirhub.core.http.app import create_app

    hub = make_hub(database_url, tmp_path, extra_plugins=[HeaderCallers()])
    with TestClient(create_app(hub=hub)) as client:

        def post(caller: str, raw: bytes) -> Any:
            return client.post("/hl7/v2", content=raw, headers={"x-test-caller": caller})

        assert post("clin-north", adt("H-1", "MRN-5", "Clin")).status_code == 403
        # North's admin may not send as south's facility...
        refused = post("admin-north", adt("H-2", "MRN-5", "Admin", facility="SOUTH"))
        assert refused.status_code == 422 and b"MSA|AR" in refused.content
        # ...but feeds for north, also with a sender not mapped to anyone.
        ok = post("admin-north", adt("H-3", "MRN-5", "Admin", app="EHR", facility="CLINIC"))
        assert ok.status_code == 200, ok.text
        backend = post("backend-south", adt("H-4", "MRN-6", "Lab", app="LIS", facility="SOUTH"))
        assert backend.status_code == 200, backend.text
    tenants = sorted(tenant_of(p) or "" for p in patients(hub))
    assert tenants == ["north", "south"]


def mllp_server(hub: Hub) -> MllpServer:
    return MllpServer(hub, "127.0.0.1", 0, frame_timeout=0.5).start()


def send(server: MllpServer, payload: bytes, *, close: bool = False) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(payload)
        if close:
            return b""
        data = b""
        while b"\x1c\r" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def wait_for(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)


def test_a_sender_bound_to_addresses_is_refused_from_elsewhere(
    database_url: str, tmp_path: Path
) -> None:
    hub = make_hub(database_url, tmp_path, sender_peers={"ADT@NORTH": ["10.0.0.0/8"]})
    server = mllp_server(hub)
    try:
        answer = send(server, frame(adt("P-1", "MRN-1", "Far")))
        assert b"MSA|AR" in answer and b"not accepted from 127.0.0.1" in answer
        assert b"MSA|AA" in send(server, frame(adt("P-2", "MRN-2", "Near", facility="SOUTH")))
        assert [tenant_of(p) for p in patients(hub)] == ["south"]
    finally:
        server.stop()
        hub.store.engine.dispose()


def test_partial_frames_keep_dead_letters_only_for_known_senders_within_quota(
    database_url: str, tmp_path: Path
) -> None:
    hub = make_hub(database_url, tmp_path, dead_letters_per_hour=2)
    server = mllp_server(hub)
    try:
        big = b"NTE|1||" + b"x" * (2 * KEPT_PARTIAL_BYTES) + b"\r"
        # An unknown sender's unfinished frames: nothing kept, however many.
        for n in range(3):
            stranger = adt(f"U-{n}", "MRN-1", "U", app="EVIL", facility="ELSEWHERE")
            send(server, b"\x0b" + stranger + big, close=True)
        # A known sender's: kept (truncated), up to the hour's quota.
        for n in range(4):
            send(server, b"\x0b" + adt(f"K-{n}", "MRN-1", "K") + big, close=True)
        wait_for(lambda: len(tasks(hub)) >= 2)
        time.sleep(1.0)
        kept = tasks(hub)
        assert len(kept) == 2
        assert {tenant_of(t) for t in kept} == {"north"}
        assert all("first 65536 bytes kept" in t["statusReason"]["text"] for t in kept)
    finally:
        server.stop()
        hub.store.engine.dispose()


def test_the_quota_counts_per_feed_per_hour() -> None:
    quota = DeadLetterQuota(2)
    assert quota.take("north", now=0) and quota.take("north", now=1)
    assert not quota.take("north", now=2)
    assert quota.take("south", now=2)
    assert quota.take("north", now=3601)
