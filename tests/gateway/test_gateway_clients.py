"""The team gateway's front door: client keys, route permissions, rate limits, metrics, probes."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp.test_utils import TestServer
from fakes import FakeUpstream, Seen, raw_request
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.emulators import cosmic
from authproxy.logs.setup import configure_logging
from authproxy.server.app import Proxy

ALICE = "alice-key-00112233445566778899"
BOB = "bob-key-aabbccddeeff00112233"
BEARER = {"Authorization": f"Bearer {ALICE}"}


@asynccontextmanager
async def gateway(routes: dict[str, Any], **extra: Any) -> AsyncIterator[tuple[Proxy, URL]]:
    document = {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        "routes": routes,
        "clients": {
            "alice": {"key": ALICE, "admin": True},
            "bob": {"key": BOB, "routes": ["open"], "rate_limit": {"rate": 0.001, "burst": 2}},
        },
        **extra,
    }
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        yield proxy, URL(proxy.urls[0])
    finally:
        await proxy.stop()


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure_logging(json=True, stream=stream)
    yield stream
    structlog.reset_defaults()


async def fetch(url: URL, headers: dict[str, str] | None = None) -> tuple[int, Any, Any]:
    async with aiohttp.ClientSession() as client, client.get(url, headers=headers) as answer:
        body = await answer.read()
        content_type = answer.headers.get("Content-Type", "")
        parsed = json.loads(body) if "json" in content_type else body.decode()
        return answer.status, parsed, answer.headers


async def test_every_proxied_request_needs_a_known_key_even_for_unknown_routes() -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        for headers in (
            None,
            {"X-Authproxy-Key": "wrong-key-000000000000"},
            {"Authorization": "Basic x"},
        ):
            for path in ("/open/x", "/no-such-route/x"):
                status, body, answer_headers = await fetch(base / path.lstrip("/"), headers)
                assert status == 401
                assert body["type"].endswith("client-unauthorized")
                assert answer_headers["WWW-Authenticate"].startswith("Bearer")
        assert upstream.requests == []
        status, _, _ = await fetch(base / "no-such-route", BEARER)
        assert status == 404


async def test_the_key_header_is_removed_and_x_authproxy_key_wins() -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        assert (await fetch(base / "open/a", BEARER))[0] == 200
        seen: Seen = upstream.requests[-1]
        assert "Authorization" not in seen.headers
        # Both sent: X-Authproxy-Key identifies the caller, and the client's own Authorization
        # (meant for the upstream) passes on a route without auth.
        headers = {"X-Authproxy-Key": ALICE, "Authorization": "Bearer for-the-upstream"}
        assert (await fetch(base / "open/b", headers))[0] == 200
        seen = upstream.requests[-1]
        assert "X-Authproxy-Key" not in seen.headers
        assert seen.headers["Authorization"] == "Bearer for-the-upstream"


async def test_a_clients_authorization_never_reaches_a_route_with_auth() -> None:
    app = cosmic.make_app()
    async with FakeUpstream() as plain:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            routes = {
                "open": {"upstream": str(plain.url)},
                "cosmic": {
                    "upstream": str(server.make_url("/")).rstrip("/"),
                    "auth": {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS},
                },
            }
            async with gateway(routes) as (_, base):
                headers = {"X-Authproxy-Key": ALICE, "Authorization": "Bearer client-own-token"}
                status, _, _ = await fetch(base / "cosmic/v1/buckets", headers)
                assert status == 200
                state = app[cosmic.STATE]
                assert state.last_headers is not None
                assert state.last_headers["Authorization"] != "Bearer client-own-token"
                assert state.last_headers["Authorization"].startswith("Bearer ey")
        finally:
            await server.close()


async def test_a_route_outside_the_clients_list_is_forbidden() -> None:
    async with FakeUpstream() as upstream:
        routes = {"open": {"upstream": str(upstream.url)}, "other": {"upstream": str(upstream.url)}}
        async with gateway(routes) as (_, base):
            status, body, _ = await fetch(base / "other/x", {"X-Authproxy-Key": BOB})
            assert status == 403
            assert body["route"] == "other"
            assert (await fetch(base / "other/x", {"X-Authproxy-Key": ALICE}))[0] == 200


async def test_rate_limit_answers_429_with_retry_after() -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        bob = {"X-Authproxy-Key": BOB}
        assert [(await fetch(base / "open/x", bob))[0] for _ in range(2)] == [200, 200]
        status, body, headers = await fetch(base / "open/x", bob)
        assert status == 429
        assert int(headers["Retry-After"]) >= 1
        assert body["type"].endswith("rate-limited")
        # Alice has no limit and is not affected by Bob's.
        assert (await fetch(base / "open/x", BEARER))[0] == 200


async def test_probes_stay_open_and_status_and_metrics_need_an_admin_key() -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        assert (await fetch(base / "-/health"))[0] == 200
        assert (await fetch(base / "-/ready"))[0] == 200
        for path in ("-/status", "-/metrics"):
            assert (await fetch(base / path))[0] == 401
            assert (await fetch(base / path, BEARER))[0] == 200
            # Bob may use one route: what every route's tokens and every client's traffic
            # look like is not his to read.
            status, body, _ = await fetch(base / path, {"X-Authproxy-Key": BOB})
            assert status == 403
            assert body["type"] == "urn:authproxy:problem:admin-only"
            assert "open" not in json.dumps(body)


async def test_metrics_count_requests_by_route_client_and_status() -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        await fetch(base / "open/x", BEARER)
        await fetch(base / "open/y", BEARER)
        await fetch(base / "open/z")
        status, text, headers = await fetch(base / "-/metrics", BEARER)
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain")
        assert 'authproxy_requests_total{client="alice",route="open",status="200"} 2.0' in text
        assert 'authproxy_requests_total{client="",route="",status="401"} 1.0' in text
        assert 'authproxy_upstream_seconds_count{route="open"} 2.0' in text
        assert "authproxy_in_flight_requests" in text
        assert ALICE not in text


async def test_access_log_names_the_client_and_never_its_key(log_output: io.StringIO) -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (
            _,
            base,
        ),
    ):
        await fetch(base / "open/x", BEARER)
        await fetch(base / "open/x", {"X-Authproxy-Key": BOB})
    text = log_output.getvalue()
    events = [json.loads(line) for line in text.splitlines() if '"event": "request"' in line]
    assert [e["client"] for e in events] == ["alice", "bob"]
    assert ALICE not in text
    assert BOB not in text


async def test_a_public_address_opened_on_purpose_is_served_with_a_warning(
    log_output: io.StringIO,
) -> None:
    """Refusing it without `clients` is the loader's and the CLI's job (tests/cli)."""
    settings = parse_settings(
        {
            "listen": "0.0.0.0:0",
            "allow_unauthenticated": True,
            "token_store": "memory",
            "routes": {"a": {"upstream": "http://127.0.0.1:9"}},
        },
        source="test",
        environ={},
    )
    opened = Proxy(settings)
    await opened.start()
    try:
        assert opened.urls == [f"http://0.0.0.0:{URL(opened.urls[0]).port}"]
    finally:
        await opened.stop()
    assert "listening on a non-loopback address" in log_output.getvalue()


@pytest.mark.parametrize("header", [b"X-Authproxy-Key: ", b"Authorization: Bearer "])
async def test_a_key_that_is_not_utf8_is_a_401_not_a_500(
    header: bytes, log_output: io.StringIO
) -> None:
    async with (
        FakeUpstream() as upstream,
        gateway({"open": {"upstream": str(upstream.url)}}) as (_, base),
    ):
        request = b"GET /open/x HTTP/1.1\r\nHost: p\r\n" + header + b"k\xff\xfe\r\n\r\n"
        response = await raw_request(base, request)
    assert response.status == 401
    assert upstream.requests == []
    assert '"level": "error"' not in log_output.getvalue()
