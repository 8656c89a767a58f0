"""Malformed, oversized and stalled clients: answered or cut off by the proxy, never forwarded."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import ClientSession, TCPConnector, TraceConfig, TraceConnectionCreateEndParams, web
from fakes import BOUND, FakeUpstream, get, raw_connection, raw_request, route, running_proxy

CONCURRENT = 200


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        pytest.param(get("/api/x", "X-Big: " + "a" * 9000), 431, id="oversized-header"),
        pytest.param(
            get("/api/x", *(f"X-H{i}: {'b' * 100}" for i in range(200))),
            431,
            id="too-many-headers",
        ),
        # aiohttp does not say which line overflowed, so a long target is a 431 too.
        pytest.param(get("/api/" + "x" * 9000), 431, id="oversized-target"),
        pytest.param(get("/api/x", "X-Big: url " + "a" * 9000), 431, id="header-says-url"),
        pytest.param(
            get("/api/x", "X-Bad\x01: too many headers received"), 400, id="bad-header-name"
        ),
        pytest.param(
            b"POST /api/x HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            id="content-length-and-chunked",
        ),
        pytest.param(
            b"POST /api/x HTTP/1.1\r\nHost: p\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            b"hello!",
            400,
            id="conflicting-content-lengths",
        ),
        pytest.param(b"G@T /api/x HTTP/1.1\r\nHost: p\r\n\r\n", 400, id="bad-method-token"),
        pytest.param(b"GET /api/x\x01y HTTP/1.1\r\nHost: p\r\n\r\n", 400, id="control-char"),
        pytest.param(b"GET /api/x\x7fy HTTP/1.1\r\nHost: p\r\n\r\n", 400, id="del-char"),
        pytest.param(b"GET /api/x HTTP/1.1\r\nHost: p\r\nX-A: 1\x00\r\n\r\n", 400, id="nul-value"),
        pytest.param(b"GET /api/x HTTP/9.9\r\nHost: p\r\n\r\n", 400, id="bad-version"),
    ],
)
async def test_malformed_requests_are_refused_and_never_forwarded(
    request_bytes: bytes, status: int
) -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, request_bytes)
        assert response.status == status
        assert response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(response.body)["status"] == status
        assert upstream.requests == []
        assert upstream.connections == 0
        assert (await raw_request(proxy, get("/api/fine"))).status == 200


async def test_stalled_clients_are_closed_while_others_are_served() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), header_timeout=0.5) as proxy,
        raw_connection(proxy) as (silent, _silent_writer),
        raw_connection(proxy) as (partial, partial_writer),
    ):
        partial_writer.write(b"GET /api/x HTTP/1.1\r\nHost: proxy.test\r\nX-Half")
        await partial_writer.drain()
        # Both stalled connections are open; an ordinary client is still served.
        assert (await raw_request(proxy, get("/api/ok"))).status == 200
        assert await asyncio.wait_for(silent.read(), BOUND) == b""
        assert await asyncio.wait_for(partial.read(), BOUND) == b""
        assert [seen.raw_path for seen in upstream.requests] == ["/ok"]


async def test_many_concurrent_keep_alive_connections_are_served() -> None:
    arrived = 0
    all_in = asyncio.Event()

    async def barrier(_request: web.BaseRequest) -> web.StreamResponse:
        # No answer until every request is in flight at once: proves they are concurrent.
        nonlocal arrived
        arrived += 1
        if arrived % CONCURRENT == 0:
            all_in.set()
        await asyncio.wait_for(all_in.wait(), BOUND)
        return web.Response(text="ok")

    created = 0

    async def count(_s: ClientSession, _c: object, _p: TraceConnectionCreateEndParams) -> None:
        nonlocal created
        created += 1

    tracing = TraceConfig()
    tracing.on_connection_create_end.append(count)
    async with (
        FakeUpstream(barrier) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession(connector=TCPConnector(limit=0), trace_configs=[tracing]) as client,
    ):

        async def one(index: int) -> str:
            async with client.get(proxy.with_path(f"/api/{index}")) as response:
                assert response.status == 200
                return await response.text()

        for _round in range(2):
            all_in.clear()
            answers = await asyncio.wait_for(
                asyncio.gather(*(one(i) for i in range(CONCURRENT))), 3 * BOUND
            )
            assert answers == ["ok"] * CONCURRENT
    assert arrived == 2 * CONCURRENT
    # The second round reused every connection, on both sides of the proxy.
    assert created == CONCURRENT
    assert upstream.connections == CONCURRENT
