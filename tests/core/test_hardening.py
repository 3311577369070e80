"""HTTP hardening: security headers, CORS, rate limits and secrets kept out of the logs."""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fhirhub.core.http.app import create_app
from fhirhub.core.http.hardening import (
    MemoryBuckets,
    Rate,
    RateLimit,
    RedisBuckets,
    caller,
    install_log_redaction,
    redact,
)
from fhirhub.core.settings import Settings
from fhirhub.sdk import Access, acting_as
from tests.plugins.audit.header_auth import as_user, auth_hub


def app_client(tmp_path: Path, sqlite_url: str, **settings: Any) -> TestClient:
    from fhirhub.core.hub import build_hub

    settings = {"listeners": False, **settings}
    hub = build_hub(Settings(db=sqlite_url, data_dir=tmp_path, **settings))
    return TestClient(create_app(hub=hub), base_url="http://testserver")


@pytest.fixture
def plain(tmp_path: Path, sqlite_url: str) -> Iterator[TestClient]:
    with app_client(tmp_path, sqlite_url) as client:
        yield client


# -- headers ---------------------------------------------------------------------------------


def test_api_responses_carry_the_security_headers(plain: TestClient) -> None:
    response = plain.get("/fhir/Patient")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert (
        response.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    )
    assert "strict-transport-security" not in response.headers  # plain http
    assert plain.get("/fhir/Nope").headers["x-frame-options"] == "DENY"  # errors too


def test_ui_pages_keep_a_policy_that_lets_them_work(plain: TestClient) -> None:
    page = plain.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'self'" in csp
    assert page.headers["x-frame-options"] == "SAMEORIGIN"  # the shell frames plugin pages


def test_hsts_when_the_request_came_over_https(tmp_path: Path, sqlite_url: str) -> None:
    with app_client(tmp_path, sqlite_url) as client:
        client.base_url = client.base_url.copy_with(scheme="https")  # type: ignore[assignment]
        response = client.get("/fhir/metadata")
    assert response.headers["strict-transport-security"].startswith("max-age=31536000")


# -- CORS ------------------------------------------------------------------------------------


def preflight(client: TestClient, origin: str) -> Any:
    return client.options(
        "/fhir/Patient",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization",
        },
    )


def test_cors_allows_configured_origins_only(tmp_path: Path, sqlite_url: str) -> None:
    with app_client(
        tmp_path, sqlite_url, cors_origins="https://app.example.org, https://b.example"
    ) as client:
        allowed = preflight(client, "https://app.example.org")
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.org"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        denied = preflight(client, "https://evil.example")
        assert denied.status_code == 400
        assert "access-control-allow-origin" not in denied.headers
        simple = client.get("/fhir/metadata", headers={"Origin": "https://b.example"})
        assert simple.headers["access-control-allow-origin"] == "https://b.example"
        assert "etag" in simple.headers["access-control-expose-headers"].lower()


def test_no_cross_origin_calls_by_default(plain: TestClient) -> None:
    assert "access-control-allow-origin" not in preflight(plain, "https://app.example.org").headers
    response = plain.get("/fhir/metadata", headers={"Origin": "https://app.example.org"})
    assert "access-control-allow-origin" not in response.headers


# -- rate limits -----------------------------------------------------------------------------


def test_rates_parse() -> None:
    assert Rate.parse("600/minute") == Rate(600, 10.0)
    assert Rate.parse("20/s") == Rate(20, 20.0)
    assert Rate.parse("100/5m") == Rate(100, 100 / 300)
    assert Rate.parse("1000/hour") == Rate(1000, 1000 / 3600)
    for off in ("off", "", "0", "none"):
        assert Rate.parse(off) is None
    with pytest.raises(ValueError, match="600/minute"):
        Rate.parse("lots")


def test_a_token_bucket_allows_bursts_then_the_rate() -> None:
    buckets = MemoryBuckets(Rate(3, 1.0))
    assert [buckets.take_now("k", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take_now("k", 100.0) == pytest.approx(1.0)
    assert buckets.take_now("other", 100.0) == 0.0  # keys do not share
    assert buckets.take_now("k", 101.5) == 0.0  # refilled 1.5, took one
    assert buckets.take_now("k", 101.5) == pytest.approx(0.5)


def test_429_with_retry_after_past_the_limit(tmp_path: Path, sqlite_url: str) -> None:
    # Authentication off: everyone is the system, limited per address (4 x 3 per hour).
    with app_client(tmp_path, sqlite_url, rate_limit="3/hour") as client:
        assert [client.get("/fhir/metadata").status_code for _ in range(12)] == [200] * 12
        refused = client.get("/fhir/metadata")
        assert refused.status_code == 429
        assert 250 < int(refused.headers["retry-after"]) <= 300  # a token every 5 minutes
        outcome = refused.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["code"] == "throttled"
        assert refused.headers["x-content-type-options"] == "nosniff"
        assert client.get("/healthz").status_code == 200  # probes are never limited


def test_the_limit_can_be_turned_off(tmp_path: Path, sqlite_url: str) -> None:
    with app_client(tmp_path, sqlite_url, rate_limit="off") as client:
        assert {client.get("/fhir/metadata").status_code for _ in range(30)} == {200}


def test_each_caller_has_its_own_bucket_and_refusals_are_audited(
    tmp_path: Path, sqlite_url: str
) -> None:
    from fhirhub.plugins.audit import audit_writer
    from fhirhub.sdk import search

    hub = auth_hub(sqlite_url, tmp_path, rate_limit="2/hour")
    with TestClient(create_app(hub=hub)) as client:
        statuses = [client.get("/fhir/Patient", headers=as_user("a")).status_code for _ in "123"]
        assert statuses == [200, 200, 429]
        assert client.get("/fhir/Patient", headers=as_user("b")).status_code == 200
        audit_writer(hub).wait_idle()
        outcomes = [(e["agent"][0]["altId"], e["outcome"]) for e in search(hub, "AuditEvent")]
    assert sorted(outcomes) == [("user:a", "0"), ("user:a", "0"), ("user:a", "4"), ("user:b", "0")]


def test_the_per_caller_limit_keys_on_the_authenticated_subject() -> None:
    seen: list[str] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    limiter = RateLimit(endpoint, MemoryBuckets(Rate(1, 0.001)), caller)
    statuses: list[int] = []

    async def call(access: Access | None) -> None:
        async def send(message: Any) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])

        async def receive() -> Any:
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "path": "/fhir/Patient", "headers": [], "method": "GET"}
        if access is None:
            await limiter(scope, receive, send)
            return
        with acting_as(access):
            await limiter(scope, receive, send)

    async def scenario() -> None:
        for subject in ("user:a", "user:a", "user:b", "client:c", "user:b"):
            await call(Access(subject=subject, scopes=()))
        for _ in range(3):
            await call(None)  # the system (authentication off) is limited per address only

    asyncio.run(scenario())
    assert statuses == [200, 429, 200, 200, 429, 200, 200, 200]


def test_redis_buckets_are_shared_between_processes() -> None:

    from tests.backends import ensure_redis

    url = "redis://127.0.0.1:6379/15"
    ensure_redis(url)
    key = f"test-{uuid.uuid4()}"

    async def scenario() -> list[float]:
        first, second = RedisBuckets(Rate(2, 0.01), url), RedisBuckets(Rate(2, 0.01), url)
        waits = [await first.take(key), await second.take(key), await first.take(key)]
        await first._client.aclose()
        await second._client.aclose()
        return waits

    allowed_1, allowed_2, refused = asyncio.run(scenario())
    assert allowed_1 == allowed_2 == 0.0
    assert 90 < refused <= 100  # a token every 100 s


def test_redis_unreachable_falls_back_to_memory(caplog: pytest.LogCaptureFixture) -> None:
    buckets = RedisBuckets(Rate(1, 0.01), "redis://127.0.0.1:9/0")  # nothing listens on 9
    waits = asyncio.run(_take_twice(buckets))
    assert waits[0] == 0.0 and waits[1] > 0
    assert "Rate limiting in memory" in caplog.text


async def _take_twice(buckets: RedisBuckets) -> list[float]:
    return [await buckets.take("k"), await buckets.take("k")]


# -- secrets out of the logs -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kept", "secret"),
    [
        ("Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2lnbmF0dXJl", "Bearer", "eyJhbGciOi"),
        ("authorization: basic YWxpY2U6czNjcmV0", "basic", "YWxpY2U6czNjcmV0"),
        ("GET /fhir/Patient?access_token=abc123&name=x HTTP/1.1", "name=x", "abc123"),
        ("grant_type=client_credentials&client_secret=s3cr3t!", "grant_type", "s3cr3t!"),
        ("username=bob&password=hunter2", "username=bob", "hunter2"),
        ('{"refresh_token": "rt-9", "scope": "openid"}', '"scope": "openid"', "rt-9"),
        ("[(b'authorization', b'Bearer tok-en.1')]", "authorization", "tok-en.1"),
        ("password%3Dhunter2", "password", "hunter2"),
    ],
)
def test_redact_blanks_credentials(text: str, kept: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted and kept in redacted and "[redacted]" in redacted


def test_plain_words_are_not_mistaken_for_credentials() -> None:
    text = "Basic validation failed for the bearer of this message"
    assert redact(text) == text


def test_log_records_are_redacted_whatever_the_logger(caplog: pytest.LogCaptureFixture) -> None:
    install_log_redaction()
    # The logger's own level too: a server started by an earlier test may have set
    # uvicorn.access (its parent) to WARNING.
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="uvicorn.access.test")
    logger = logging.getLogger("uvicorn.access.test")
    logger.info('%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/fhir?access_token=zzz9", "1.1", 200)
    logger.warning("headers: %r", {"authorization": "Bearer abcdef.123456"})
    logger.error("login failed: password=hunter2")
    text = caplog.text
    assert "zzz9" not in text and "abcdef.123456" not in text and "hunter2" not in text
    assert text.count("[redacted]") == 3 and "1.2.3.4" in text and " 200" in text


# -- TLS -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_with_uvicorns_own_tls(tmp_path: Path, sqlite_url: str) -> None:
    import shutil
    import subprocess
    import sys
    import time

    import httpx

    from tests.conftest import free_port

    if shutil.which("openssl") is None:  # Debian's base system has it; CI must not skip
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed")
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    env = {**os.environ, "FHIRHUB_DATA_DIR": str(tmp_path), "FHIRHUB_HL7_PORT": "off"}
    env["FHIRHUB_DICOM_PORT"] = "off"
    server = subprocess.Popen(
        [sys.executable, "-m", "fhirhub.core.cli", "serve", "--port", str(port)]
        + ["--db", sqlite_url, "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(f"https://127.0.0.1:{port}/fhir/metadata", verify=str(cert))
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and server.poll() is None, "no TLS server"
                time.sleep(0.2)
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
    finally:
        server.terminate()
        server.wait(10)
