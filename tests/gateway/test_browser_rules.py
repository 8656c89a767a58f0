"""What web pages can make a browser send, on raw sockets: Host names, Origin, Fetch Metadata, CORS.

Without `clients` the proxy acts for whoever reaches it, so a page that rebinds its own name to
127.0.0.1 (Host: evil.example) or posts from another origin must not reach an upstream, nor make
the proxy log in. The headers are written by hand here, as a browser would send them; the real
browser is in test_browser_chromium.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from authfakes import Emulator, serve
from fakes import FakeUpstream, RawResponse, raw_request
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.emulators import cosmic
from authproxy.gateway.browser import HostNames
from authproxy.server.app import Proxy

APP = "http://127.0.0.1:3000"
ALICE = "alice-key-00112233445566778899"


def request(
    target: str, host: str | None, *headers: str, method: str = "GET", body: bytes = b""
) -> bytes:
    """A raw request; `host` None sends HTTP/1.0 without Host (HTTP/1.1 requires one)."""
    lines = [f"{method} {target} HTTP/1.{0 if host is None else 1}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines += [*headers, f"Content-Length: {len(body)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def problem_type(response: RawResponse) -> str:
    assert response.headers["Content-Type"] == "application/problem+json"
    kind: str = json.loads(response.body)["type"]
    return kind.removeprefix("urn:authproxy:problem:")


@asynccontextmanager
async def proxy_for(routes: dict[str, Any], **extra: Any) -> AsyncIterator[URL]:
    document = {"listen": "127.0.0.1:0", "token_store": "memory", "routes": routes, **extra}
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        yield URL(proxy.urls[0])
    finally:
        await proxy.stop()


@asynccontextmanager
async def cosmic_behind_proxy(**extra: Any) -> AsyncIterator[tuple[Emulator, URL]]:
    async with serve(cosmic.make_app(), "/v1/auth/login") as emulator:
        route = {"upstream": emulator.url, "auth": {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}}
        async with proxy_for({"cosmic": route}, **extra) as base:
            yield emulator, base


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:8080",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "proxy.internal.evil.example",
        "localhost:80:80",
        "[::1]x",
        "",
    ],
)
async def test_a_host_that_is_not_the_proxys_own_is_refused_before_any_login(host: str) -> None:
    async with cosmic_behind_proxy(allowed_hosts=["proxy.internal"]) as (emulator, base):
        for target in ("/cosmic/v1/buckets", "/-/status", "/-/metrics"):
            response = await raw_request(base, request(target, host))
            assert response.status == 403, (target, response.body)
            assert problem_type(response) == "host-not-allowed"
        assert emulator.state.logins == 0
        assert emulator.tap.bodies == []


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "LOCALHOST:1234",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]:9",
        "proxy.internal",
        "proxy.internal:443",
        "box:8080",
        None,  # HTTP/1.0 clients may omit Host; a browser never does
    ],
)
async def test_the_proxys_own_names_are_served(host: str | None) -> None:
    async with cosmic_behind_proxy(allowed_hosts=["proxy.internal", "box:8080"]) as (_, base):
        response = await raw_request(base, request("/cosmic/v1/buckets", host))
        assert response.status == 200, response.body
        assert (await raw_request(base, request("/-/status", host))).status == 200


async def test_an_allowed_host_entry_with_a_port_allows_that_port_only() -> None:
    async with cosmic_behind_proxy(allowed_hosts=["box:8080"]) as (emulator, base):
        response = await raw_request(base, request("/cosmic/v1/buckets", "box:8081"))
        assert problem_type(response) == "host-not-allowed"
        response = await raw_request(base, request("/cosmic/v1/buckets", "box"))
        assert problem_type(response) == "host-not-allowed"
        assert emulator.state.logins == 0


@pytest.mark.parametrize(
    "headers",
    [
        ("Origin: http://evil.example",),
        ("Origin: null",),
        ("Origin: http://127.0.0.1:3001",),
        ("Origin: https://127.0.0.1:{port}",),
        ("Sec-Fetch-Site: cross-site",),
        ("Sec-Fetch-Site: same-site",),
        ("Sec-Fetch-Site: same-site", "Origin: http://127.0.0.1:{port}"),
        ("Sec-Fetch-Site: cross-site", "Sec-Fetch-Mode: navigate", "Sec-Fetch-Dest: image"),
    ],
)
async def test_a_request_from_another_site_is_refused_before_any_login(
    headers: tuple[str, ...],
) -> None:
    async with cosmic_behind_proxy() as (emulator, base):
        sent = [line.format(port=base.port) for line in headers]
        for target, method in (("/cosmic/v1/buckets", "POST"), ("/-/status", "GET")):
            host = f"127.0.0.1:{base.port}"
            response = await raw_request(base, request(target, host, *sent, method=method))
            assert response.status == 403, (target, response.body)
            assert problem_type(response) == "cross-site-request"
        assert emulator.state.logins == 0
        assert emulator.tap.bodies == []


@pytest.mark.parametrize(
    "headers",
    [
        (),  # curl, SDKs, server-side code: no Origin, no Fetch Metadata
        ("Sec-Fetch-Site: none", "Sec-Fetch-Mode: navigate"),  # typed into the address bar
        ("Sec-Fetch-Site: same-origin", "Origin: http://127.0.0.1:{port}"),
        ("Origin: HTTP://127.0.0.1:{port}",),
    ],
)
async def test_requests_not_from_another_site_pass(headers: tuple[str, ...]) -> None:
    async with cosmic_behind_proxy() as (emulator, base):
        sent = [line.format(port=base.port) for line in headers]
        host = f"127.0.0.1:{base.port}"
        response = await raw_request(base, request("/cosmic/v1/buckets", host, *sent))
        assert response.status == 200, response.body
        assert emulator.state.logins == 1


# ---- CORS: opt-in per route ---------------------------------------------------------------------


def cors_route(upstream: URL) -> dict[str, Any]:
    return {
        "upstream": str(upstream),
        "cors": {"origins": [APP], "methods": ["GET", "POST"], "headers": ["X-Trace"]},
    }


def preflight(host: str, origin: str, method: str, *headers: str) -> bytes:
    return request(
        "/api/items",
        host,
        f"Origin: {origin}",
        f"Access-Control-Request-Method: {method}",
        *headers,
        method="OPTIONS",
    )


async def test_a_listed_origins_preflight_is_answered_by_the_proxy() -> None:
    async with FakeUpstream() as upstream, proxy_for({"api": cors_route(upstream.url)}) as base:
        host = f"127.0.0.1:{base.port}"
        response = await raw_request(
            base,
            preflight(
                host,
                APP,
                "POST",
                "Access-Control-Request-Headers: content-type,x-trace",
                "Access-Control-Request-Private-Network: true",
                "Sec-Fetch-Site: cross-site",
            ),
        )
        assert response.status == 204
        headers = response.headers
        assert headers["Access-Control-Allow-Origin"] == APP
        assert headers["Access-Control-Allow-Methods"] == "GET, POST"
        assert set(headers["Access-Control-Allow-Headers"].split(", ")) == {
            "x-trace",
            "content-type",
        }
        assert headers["Access-Control-Max-Age"] == "600"
        assert "Origin" in headers["Vary"]
        assert headers["Access-Control-Allow-Private-Network"] == "true"
        assert "Access-Control-Allow-Credentials" not in headers
        assert upstream.requests == []


@pytest.mark.parametrize(
    ("origin", "method", "extra"),
    [
        ("http://evil.example", "POST", ()),
        ("http://127.0.0.1:3001", "GET", ()),
        ("null", "GET", ()),
        (APP, "DELETE", ()),
        (APP, "POST", ("Access-Control-Request-Headers: x-trace, authorization",)),
    ],
)
async def test_a_preflight_the_route_does_not_allow_is_refused_and_never_forwarded(
    origin: str, method: str, extra: tuple[str, ...]
) -> None:
    async with FakeUpstream() as upstream, proxy_for({"api": cors_route(upstream.url)}) as base:
        host = f"127.0.0.1:{base.port}"
        response = await raw_request(base, preflight(host, origin, method, *extra))
        assert response.status == 403
        assert problem_type(response) == "cross-site-request"
        assert "Access-Control-Allow-Origin" not in response.headers
        assert upstream.requests == []


async def test_a_route_without_cors_refuses_every_preflight() -> None:
    async with (
        FakeUpstream() as upstream,
        proxy_for({"api": {"upstream": str(upstream.url)}}) as base,
    ):
        response = await raw_request(base, preflight(f"127.0.0.1:{base.port}", APP, "GET"))
        assert problem_type(response) == "cross-site-request"
        assert upstream.requests == []


async def test_a_listed_origin_reads_the_answer_and_the_upstreams_cors_never_passes() -> None:
    async def permissive(_request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response(
            {"ok": True},
            headers={
                "Access-Control-Allow-Origin": "*",
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Expose-Headers": "X-Secret",
                "Access-Control-Allow-Methods": "*",
            },
        )

    async with (
        FakeUpstream(permissive) as upstream,
        proxy_for({"api": cors_route(upstream.url)}) as base,
    ):
        host = f"127.0.0.1:{base.port}"
        listed = await raw_request(
            base,
            request("/api/items", host, f"Origin: {APP}", "Sec-Fetch-Site: cross-site", body=b"x"),
        )
        assert listed.status == 200
        assert json.loads(listed.body) == {"ok": True}
        assert listed.headers.getall("Access-Control-Allow-Origin") == [APP]
        assert "Origin" in listed.headers.getall("Vary")
        for name in (
            "Access-Control-Allow-Credentials",
            "Access-Control-Expose-Headers",
            "Access-Control-Allow-Methods",
        ):
            assert name not in listed.headers, name

        # No Origin (curl): the upstream's permissive CORS is not passed on either.
        plain = await raw_request(base, request("/api/items", host))
        assert plain.status == 200
        assert "Access-Control-Allow-Origin" not in plain.headers
        assert "Origin" in plain.headers.getall("Vary")
        assert len(upstream.requests) == 2


# ---- gateway: keys are the control, but the client's Host is never reflected -------------------


async def test_a_gateway_serves_any_host_but_names_itself_by_its_own_address() -> None:
    async def redirect(request: web.BaseRequest) -> web.StreamResponse:
        seen = request.headers.get("X-Forwarded-Host", "")
        return web.Response(status=302, headers={"Location": f"{origin}/next", "X-Seen": seen})

    async with FakeUpstream(redirect) as upstream:
        origin = str(upstream.url)
        clients = {"alice": {"key": ALICE}}
        routes = {"api": {"upstream": origin}}
        async with proxy_for(routes, clients=clients) as base:
            own = f"127.0.0.1:{base.port}"
            key = f"X-Authproxy-Key: {ALICE}"
            for host, named in (("evil.example", own), (None, own), (own, own)):
                response = await raw_request(
                    base, request("/api/x", host, key, "Origin: http://evil.example")
                )
                assert response.status == 302, response.body
                assert response.headers["Location"] == f"http://{named}/api/next"
                assert response.headers["X-Seen"] == named
        async with proxy_for(routes, clients=clients, allowed_hosts=["gw.example"]) as base:
            key = f"X-Authproxy-Key: {ALICE}"
            response = await raw_request(base, request("/api/x", "evil.example", key))
            assert response.headers["Location"] == "http://gw.example/api/next"
            response = await raw_request(base, request("/api/x", "localhost:9", key))
            assert response.headers["Location"] == "http://localhost:9/api/next"


# ---- the names, without sockets ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "allowed", "refused", "default"),
    [
        ("127.0.0.1:8080", ["127.0.0.1:9", "LocalHost"], ["0.0.0.0:8080"], "127.0.0.1:8080"),
        ("[::1]:8080", ["[::1]", "[::1]:8080"], ["::1", "[::2]"], "[::1]:8080"),
        ("myhost.lan:8080", ["myhost.lan", "MYHOST.LAN:1"], ["myhost", "lan"], "myhost.lan:8080"),
        # A wildcard listen is not a name anyone uses: allowed_hosts names the proxy then.
        ("0.0.0.0:8080", ["localhost:8080"], ["0.0.0.0:8080", "0.0.0.0"], "0.0.0.0:8080"),
        ("[::]:8080", ["[::1]:8080"], ["[::]:8080"], "[::]:8080"),
    ],
)
def test_host_names_of_a_listen_address(
    listen: str, allowed: list[str], refused: list[str], default: str
) -> None:
    document: dict[str, Any] = {"listen": listen, "token_store": "memory"}
    document |= {"routes": {"a": {"upstream": "http://127.0.0.1:9"}}, "allow_unauthenticated": True}
    names = HostNames(parse_settings(document, source="test", environ={}), 8080)
    assert [host for host in allowed if not names.allow(host)] == []
    assert [host for host in refused if names.allow(host)] == []
    assert names.default == default


async def test_a_listed_origin_can_read_the_proxys_own_error_answer() -> None:
    async with FakeUpstream() as upstream:
        gone = upstream.url  # its port is closed once the block ends
    async with proxy_for({"api": cors_route(gone)}) as base:
        host = f"127.0.0.1:{base.port}"
        response = await raw_request(base, request("/api/items", host, f"Origin: {APP}"))
        assert response.status == 502
        assert problem_type(response) == "upstream-unavailable"
        assert response.headers["Access-Control-Allow-Origin"] == APP
        assert "Origin" in response.headers.getall("Vary")
