"""Header rules on real sockets: hop-by-hop both ways, Host, X-Forwarded-*, Location, request ids.

Requests go over a raw socket because aiohttp's client rewrites `Connection`; the response-side
upstream is a raw TCP script for the same reason on the other side.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web
from fakes import BOUND, FakeUpstream, RawUpstream, get, raw_request, route, running_proxy
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.proxy.headers import LocationRewriter, downstream_response_headers

REQUEST_HOPS = (
    "Connection: close, X-Foo, x-bar",
    "X-Foo: named-in-connection",
    "X-Bar: also-named",
    "Keep-Alive: timeout=5",
    "TE: trailers",
    "Trailer: X-Checksum",
    "Upgrade: h2c",
    "Proxy-Authorization: Basic cHJveHk6cGFzcw==",
    "Proxy-Connection: keep-alive",
    "X-Kept: yes",
)


def received(body: bytes) -> CIMultiDict[str]:
    return CIMultiDict((name, value) for name, value in json.loads(body)["headers"])


async def test_hop_by_hop_request_headers_are_removed() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x", *REQUEST_HOPS))
        assert response.status == 200
        seen = received(response.body)
        for name in ("X-Foo", "X-Bar", "Keep-Alive", "TE", "Trailer", "Upgrade"):
            assert name not in seen, name
        assert "Proxy-Authorization" not in seen
        assert "Proxy-Connection" not in seen
        assert "x-foo" not in seen.get("Connection", "").lower()
        assert seen["X-Kept"] == "yes"


async def answer_with_hops(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(
        b"HTTP/1.1 200 OK\r\n"
        b"Content-Length: 2\r\n"
        b"Connection: X-Hop-Response\r\n"
        b"X-Hop-Response: named-in-connection\r\n"
        b"Keep-Alive: timeout=5, max=100\r\n"
        b"Proxy-Authenticate: Basic realm=upstream\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: h2c\r\n"
        b"Set-Cookie: a=1; Path=/\r\n"
        b"Set-Cookie: b=2, c=3; Path=/\r\n"
        b"X-Kept: yes\r\n"
        b"\r\n"
        b"ok"
    )
    await writer.drain()
    await reader.read()


async def test_hop_by_hop_response_headers_are_removed_and_cookies_stay_separate() -> None:
    async with (
        RawUpstream(answer_with_hops) as upstream,
        running_proxy(route(upstream.url)) as proxy,
    ):
        response = await raw_request(proxy, get("/api/x"))
        assert response.status == 200
        assert response.body == b"ok"
        headers = response.headers
        for name in ("X-Hop-Response", "Keep-Alive", "Proxy-Authenticate", "Trailer", "Upgrade"):
            assert name not in headers, name
        assert "x-hop-response" not in headers.get("Connection", "").lower()
        assert headers.getall("Set-Cookie") == ["a=1; Path=/", "b=2, c=3; Path=/"]
        assert headers["X-Kept"] == "yes"


async def test_host_becomes_the_upstreams_and_forwarded_headers_are_set() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x", "X-Forwarded-For: 10.1.2.3"))
        seen = received(response.body)
        assert seen["Host"] == f"{upstream.url.host}:{upstream.url.port}"
        assert seen.getall("X-Forwarded-For") == ["10.1.2.3, 127.0.0.1"]
        assert seen["X-Forwarded-Proto"] == "http"
        assert seen["X-Forwarded-Host"] == "proxy.test"

        response = await raw_request(proxy, get("/api/x"))
        assert received(response.body)["X-Forwarded-For"] == "127.0.0.1"

        # Behind another proxy, each header keeps the earlier hops and gains this one.
        chained = get(
            "/api/x",
            "X-Forwarded-For: 10.1.2.3",
            "X-Forwarded-For: 10.4.5.6",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: public.example",
        )
        seen = received((await raw_request(proxy, chained)).body)
        assert seen.getall("X-Forwarded-For") == ["10.1.2.3, 10.4.5.6, 127.0.0.1"]
        assert seen["X-Forwarded-Proto"] == "https, http"
        assert seen["X-Forwarded-Host"] == "public.example, proxy.test"


async def test_forwarded_headers_can_be_turned_off() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url, forwarded_headers=False)) as proxy,
    ):
        seen = received((await raw_request(proxy, get("/api/x"))).body)
        assert seen["Host"] == f"{upstream.url.host}:{upstream.url.port}"
        for name in ("X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"):
            assert name not in seen


async def test_locations_pointing_at_the_upstream_are_rewritten_and_never_followed() -> None:
    async def redirect(request: web.BaseRequest) -> web.StreamResponse:
        locations = {
            "/base/absolute": (f"{origin}/base/next?x=1", f"{origin}/base/doc"),
            "/base/path": ("/next", "/base/doc#frag"),
            "/base/elsewhere": ("https://elsewhere.example/base/x", "other/relative"),
        }
        location, content_location = locations[request.raw_path]
        return web.Response(
            status=302, headers={"Location": location, "Content-Location": content_location}
        )

    async with FakeUpstream(redirect) as upstream:
        origin = str(upstream.url)
        async with running_proxy(route(upstream.url, base="/base")) as proxy:
            absolute = await raw_request(proxy, get("/api/absolute"))
            path = await raw_request(proxy, get("/api/path"))
            elsewhere = await raw_request(proxy, get("/api/elsewhere"))
        assert len(upstream.requests) == 3, "a redirect must not be followed"
    assert absolute.status == 302
    # The client asked for Host: proxy.test, so that is the proxy's URL it knows.
    assert absolute.headers["Location"] == "http://proxy.test/api/next?x=1"
    assert absolute.headers["Content-Location"] == "http://proxy.test/api/doc"
    assert path.headers["Location"] == "/api/next"
    assert path.headers["Content-Location"] == "/api/doc#frag"
    assert elsewhere.headers["Location"] == "https://elsewhere.example/base/x"
    assert elsewhere.headers["Content-Location"] == "other/relative"


# What the upstream of a `prefix: /` route with base path /base answers, and what the client
# must get: never a location a browser reads as another host (`//host`, `/\\host`).
OPEN_REDIRECTS = {
    "/base/slashes": ("/base//evil.example/x", "http://proxy.test//evil.example/x"),
    "/base/backslash": ("/base/\\evil.example", "http://proxy.test/\\evil.example"),
    "/base/tab": ("/base/\t/evil.example", "http://proxy.test/\t/evil.example"),
    "/base/own": ("/\\evil.example/y", "http://proxy.test/\\evil.example/y"),
    "/base/query": ("/base?next=1", "/?next=1"),
    "/base/plain": ("/base/next", "/next"),
}


async def redirect_by_path(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while head := await reader.readuntil(b"\r\n\r\n"):
        target = head.split(b" ", 2)[1].decode()
        location = OPEN_REDIRECTS[target][0].encode()
        writer.write(
            b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\nContent-Length: 0\r\n\r\n"
        )
        await writer.drain()


async def test_a_rewritten_location_never_points_at_another_host() -> None:
    async with (
        RawUpstream(redirect_by_path) as upstream,
        running_proxy(route(upstream.url, "/", base="/base")) as proxy,
    ):
        for path, (_, expected) in OPEN_REDIRECTS.items():
            response = await raw_request(proxy, get(path.removeprefix("/base")))
            assert response.status == 302
            assert response.headers["Location"] == expected, path


async def test_request_id_is_propagated_and_returned() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        given = await raw_request(proxy, get("/api/x", "X-Request-Id: req-abc-123"))
        generated = await raw_request(proxy, get("/api/x"))
    assert upstream.requests[0].headers["X-Request-Id"] == "req-abc-123"
    assert given.headers["X-Request-Id"] == "req-abc-123"
    new_id = upstream.requests[1].headers["X-Request-Id"]
    assert new_id
    assert generated.headers["X-Request-Id"] == new_id
    assert generated.headers.getall("X-Request-Id") == [new_id]


async def test_request_id_is_returned_on_proxy_errors() -> None:
    async with running_proxy() as proxy:
        response = await asyncio.wait_for(
            raw_request(proxy, get("/nowhere", "X-Request-Id: req-404")), BOUND
        )
    assert response.status == 404
    assert response.headers["X-Request-Id"] == "req-404"


# ---- the pure rules -----------------------------------------------------------------------------


def test_connection_named_headers_are_dropped_case_insensitively() -> None:
    upstream: CIMultiDict[str] = CIMultiDict(
        [("connection", "X-A,  x-b"), ("x-a", "1"), ("X-B", "2"), ("X-C", "3")]
    )
    out = downstream_response_headers(CIMultiDictProxy(upstream), drop=frozenset({"X-C"}))
    assert list(out.items()) == []


def test_location_rewriter_only_touches_the_upstream() -> None:
    rewriter = LocationRewriter("http://up:81", "/base/", "/api")
    assert rewriter.rewrite("http://up:81/base", "http://p") == "http://p/api"
    assert rewriter.rewrite("http://up:81/base/a?b", "http://p") == "http://p/api/a?b"
    assert rewriter.rewrite("http://up:81", "http://p") == "http://p/api/"
    assert rewriter.rewrite("http://up:811/base/a", "http://p") == "http://up:811/base/a"
    assert rewriter.rewrite("http://up:81/basement", "http://p") == "http://p/api/basement"
    assert rewriter.rewrite("//up:81/base/a", "http://p") == "//up:81/base/a"
    root = LocationRewriter("http://up:81", "", "/")
    assert root.rewrite("/x", "http://p") == "/x"
    assert root.rewrite("/\\x", "http://p") == "http://p/\\x"
    assert root.rewrite("http://up:81//x", "http://p") == "http://p//x"
    based = LocationRewriter("http://up:81", "/base", "/")
    for scheme_relative in ("/base//x", "/base/\\x", "/base/\t/x", "/base/\n\\x", "/base/\r//x"):
        assert based.rewrite(scheme_relative, "http://p").startswith("http://p/"), scheme_relative
    assert based.rewrite("/base", "http://p") == "/"
    assert based.rewrite("/base#top", "http://p") == "/#top"
    assert based.rewrite("/base/x", "http://p") == "/x"
