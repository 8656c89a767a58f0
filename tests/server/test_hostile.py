"""Malformed, oversized and stalled clients: answered or cut off by the proxy, never forwarded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import replace

import pytest
from aiohttp import ClientSession, TCPConnector, TraceConfig, TraceConnectionCreateEndParams, web
from authfakes import route as auth_fakes_route
from authfakes import running_proxy as authfakes_proxy
from authfakes import serve, settings_for, wait_until
from fakes import (
    BOUND,
    FakeUpstream,
    RawResponse,
    auth_route,
    get,
    raw_connection,
    raw_request,
    read_response,
    route,
    running_proxy,
)
from yarl import URL

from authproxy.auth.clock import ManualClock
from authproxy.emulators import cosmic
from tools.recording_upstream import RecordingUpstream

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
        # RFC 9110 §15.6.6: a version the proxy does not speak is a 505; no version (HTTP/0.9)
        # or a malformed one is a 400.
        pytest.param(b"GET /api/x HTTP/9.9\r\nHost: p\r\n\r\n", 505, id="version-9.9"),
        pytest.param(b"GET /api/x HTTP/2.0\r\nHost: p\r\n\r\n", 505, id="version-2.0"),
        pytest.param(b"GET /api/x HTTP/1.2\r\nHost: p\r\n\r\n", 505, id="version-1.2"),
        pytest.param(b"GET /api/x HTTP/0.9\r\nHost: p\r\n\r\n", 400, id="version-0.9"),
        pytest.param(b"GET /api/x\r\n\r\n", 400, id="http-0.9-request-line"),
        pytest.param(b"GET /api/x HTTP/x.1\r\nHost: p\r\n\r\n", 400, id="malformed-version"),
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


# ---- slow bodies ---------------------------------------------------------------------------------

SLOW_CLIENTS = 20


async def one_byte_short(proxy: URL, path: str) -> tuple[RawResponse, bytes]:
    """Declare 100 bytes, send 99, and wait: the answer, then what follows it (EOF: b"")."""
    async with raw_connection(proxy) as (reader, writer):
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 100\r\n\r\n".encode()
            + b"x" * 99
        )
        answer = await asyncio.wait_for(read_response(reader), BOUND)
        return answer, await asyncio.wait_for(reader.read(), BOUND)


async def test_bodies_that_stop_one_byte_short_get_408_and_are_closed() -> None:
    async with (
        RecordingUpstream() as upstream,
        running_proxy(
            route(upstream.url, "/plain"), auth_route(upstream.url), body_timeout=0.3
        ) as proxy,
    ):
        # Buffered for a replay (auth) and streamed upstream (plain), many at once.
        paths = [f"/{kind}/slow/{i}" for kind in ("auth", "plain") for i in range(SLOW_CLIENTS)]
        results = await asyncio.gather(*(one_byte_short(proxy, path) for path in paths))
        for answer, after in results:
            assert answer.status == 408
            assert answer.headers["Connection"] == "close"
            assert json.loads(answer.body)["type"] == "urn:authproxy:problem:body-timeout"
            assert after == b""
        assert (await raw_request(proxy, get("/plain/fine"))).status == 200
    # Nothing incomplete reached the upstream as a request, and no connection that carried a
    # partial body was used again (the next request would have continued that body).
    assert [(seen.method, seen.target) for seen in upstream.requests] == [("GET", "/fine")]
    assert upstream.problems == []
    assert upstream.leftovers == []


async def test_a_used_up_replay_budget_streams_the_next_body() -> None:
    clock = ManualClock()
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        auth = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
        settings = replace(
            settings_for({"cosmic": auth_fakes_route(emu.url, **auth)}), replay_buffer_total=100
        )
        async with authfakes_proxy(settings, clock) as proxy:
            assert (await proxy.get("/cosmic/warm-up")).status == 200
            emu.state.revoke_all()
            emu.tap.holding_refusals = True
            loop = asyncio.get_running_loop()
            first = loop.create_task(
                proxy.request("POST", "/cosmic/a", data=b"a" * 60), name="first"
            )
            await wait_until(lambda: emu.tap.held_refusals == 1, "the first 401")
            # The first body holds 60 of 100 bytes until its exchange ends: this one streams.
            second = loop.create_task(
                proxy.request("POST", "/cosmic/b", data=b"b" * 60), name="second"
            )
            await wait_until(lambda: emu.tap.held_refusals == 2, "the second 401")
            emu.tap.release_refusals(2)
            replies = await asyncio.wait_for(asyncio.gather(first, second), BOUND)
            assert [reply.status for reply in replies] == [200, 401]
            assert emu.tap.bodies[-3:] == [b"a" * 60, b"b" * 60, b"a" * 60]  # one replay
            assert proxy.proxy.replay_budget.held == 0


# ---- heads on keep-alive connections, the connection cap -----------------------------------------


@pytest.mark.parametrize(
    "stall",
    [
        pytest.param(b"GET /api/second HTTP/1.1\r\nHost: proxy.test\r\nX-Hal", id="next-request"),
        pytest.param(b"G", id="one-byte"),
    ],
)
async def test_a_second_head_that_stalls_is_closed_after_header_timeout(stall: bytes) -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), header_timeout=0.3) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(b"GET /api/first HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        first = await asyncio.wait_for(read_response(reader), BOUND)
        writer.write(stall)
        # keepalive_timeout (75 s) would keep it far beyond the bound: header_timeout closes it.
        rest = await asyncio.wait_for(reader.read(), BOUND)
    assert first.status == 200
    assert rest == b""
    assert [seen.raw_path for seen in upstream.requests] == ["/first"]


async def test_a_stalled_head_pipelined_behind_a_request_is_closed_after_its_answer() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), header_timeout=0.3) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(
            b"GET /api/first HTTP/1.1\r\nHost: proxy.test\r\n\r\nGET /api/second HTTP/1.1\r\nX-"
        )
        first = await asyncio.wait_for(read_response(reader), BOUND)
        rest = await asyncio.wait_for(reader.read(), BOUND)
    assert first.status == 200
    assert rest == b""


async def test_an_idle_keep_alive_connection_outlives_header_timeout() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), header_timeout=0.2) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        for index in range(2):
            writer.write(f"GET /api/{index} HTTP/1.1\r\nHost: proxy.test\r\n\r\n".encode())
            assert (await asyncio.wait_for(read_response(reader), BOUND)).status == 200
            # Idle between requests is keepalive_timeout's business, not header_timeout's.
            await asyncio.sleep(0.6)
    assert upstream.connections == 1


async def test_a_header_timeout_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), header_timeout=0.2) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(b"GET /api/x HTTP/1.1\r\nHost: pro")
        assert await asyncio.wait_for(reader.read(), BOUND) == b""
        await asyncio.sleep(0)
    assert [record for record in caplog.records if record.levelname == "ERROR"] == []


async def test_connections_over_the_cap_get_a_canned_503_and_are_closed() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url), max_connections=3) as proxy,
        contextlib.AsyncExitStack() as stack,
    ):
        held = [await stack.enter_async_context(raw_connection(proxy)) for _ in range(3)]
        for reader, writer in held:  # each answered: each is counted by the proxy
            writer.write(b"GET /api/held HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
            assert (await asyncio.wait_for(read_response(reader), BOUND)).status == 200
        async with raw_connection(proxy) as (reader, writer):
            writer.write(get("/api/over"))
            over = await asyncio.wait_for(read_response(reader), BOUND)
            assert await asyncio.wait_for(reader.read(), BOUND) == b""
        assert over.status == 503
        assert over.headers["Connection"] == "close"
        assert json.loads(over.body)["type"] == "urn:authproxy:problem:too-many-connections"
        held[0][1].close()
        # Once the proxy has seen that close, a new connection is served again.
        for _ in range(100):
            if (await raw_request(proxy, get("/api/again"))).status == 200:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("no connection was served after one closed")
    assert "/over" not in [seen.raw_path for seen in upstream.requests]
