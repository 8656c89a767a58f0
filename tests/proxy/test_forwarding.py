"""The hot path end to end: methods, bodies both ways and both framings, streaming without
buffering, gzip untouched, no-body answers, 100-continue, keep-alive, and upstream failures.

Streaming is proven with Event handshakes, never timing: the far side waits for the near side to
have seen the first chunk, so a proxy that buffers the whole body deadlocks and the bound trips.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import ClientPayloadError, ClientSession, web
from fakes import (
    BOUND,
    FakeUpstream,
    RawUpstream,
    get,
    raw_connection,
    raw_request,
    read_response,
    route,
    running_proxy,
)
from yarl import URL

from authproxy.settings import Route

MiB = 1024 * 1024
LARGE_CHUNKS = 64  # of 1 MiB each
BLOCK = os.urandom(MiB)


def large_chunk(index: int) -> bytes:
    """1 MiB, different for every index, so lost or reordered chunks change the hash."""
    return index.to_bytes(4, "big") + BLOCK[4:]


LARGE_SHA256 = hashlib.sha256(b"".join(large_chunk(i) for i in range(LARGE_CHUNKS))).hexdigest()


def at(proxy: URL, path: str) -> URL:
    return proxy.with_path(path)


async def digest(request: web.BaseRequest) -> web.StreamResponse:
    """Hash the request body as it streams in; report what framing it came with."""
    sha, size = hashlib.sha256(), 0
    async for chunk in request.content.iter_any():
        sha.update(chunk)
        size += len(chunk)
    return web.json_response(
        {
            "sha256": sha.hexdigest(),
            "size": size,
            "chunked": request.headers.get("Transfer-Encoding", "").lower() == "chunked",
            "content_length": request.headers.get("Content-Length"),
        }
    )


@asynccontextmanager
async def proxy_with_healthy(failing: Route) -> AsyncIterator[URL]:
    """A proxy with `failing` and a healthy route at `/ok`, to show it keeps serving."""
    async with (
        FakeUpstream() as healthy,
        running_proxy(failing, route(healthy.url, "/ok")) as proxy,
    ):
        yield proxy


async def survives(proxy: URL) -> None:
    """The proxy still forwards an ordinary request after a failure."""
    response = await raw_request(proxy, get("/ok/after"))
    assert response.status == 200
    assert json.loads(response.body)["path"] == "/after"


# ---- methods and bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    # Only methods llhttp (aiohttp's C parser) knows: it answers any other token with a 400.
    "method",
    ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PROPFIND", "MKCOL", "REPORT"],
)
async def test_every_method_is_forwarded_with_its_body(method: str) -> None:
    body = f"body of {method}".encode()
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.request(method, at(proxy, "/api/m"), data=body) as response,
    ):
        answer = await response.json()
    assert response.status == 200
    assert [seen.method for seen in upstream.requests] == [method]
    assert answer["method"] == method
    assert answer["body"] == body.decode()


async def test_head_is_forwarded_and_carries_no_body() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url)) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(get("/api/h").replace(b"GET", b"HEAD", 1))
        response = await asyncio.wait_for(read_response(reader, head_only=True), BOUND)
        rest = await asyncio.wait_for(reader.read(), BOUND)
    assert [seen.method for seen in upstream.requests] == ["HEAD"]
    assert response.status == 200
    assert int(response.headers["Content-Length"]) > 0, "HEAD keeps the GET's length"
    assert rest == b""


@pytest.mark.parametrize("status", [204, 304])
async def test_no_body_statuses_carry_no_body(status: int) -> None:
    async def answer(_request: web.BaseRequest) -> web.StreamResponse:
        return web.Response(status=status, headers={"ETag": '"v1"'})

    async with (
        FakeUpstream(answer) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(get("/api/x"))
        response = await asyncio.wait_for(read_response(reader, head_only=True), BOUND)
        rest = await asyncio.wait_for(reader.read(), BOUND)
    assert response.status == status
    assert response.headers["ETag"] == '"v1"'
    assert "Transfer-Encoding" not in response.headers
    assert rest == b""


async def chunks(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_request_bodies_with_content_length_and_chunked_arrive_intact() -> None:
    body = os.urandom(3 * MiB + 17)
    expected = hashlib.sha256(body).hexdigest()
    async with (
        FakeUpstream(digest) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        async with client.post(at(proxy, "/api/up"), data=io.BytesIO(body)) as response:
            sized = await response.json()
        async with client.post(at(proxy, "/api/up"), data=chunks(body)) as response:
            chunked = await response.json()
    assert sized == {
        "sha256": expected,
        "size": len(body),
        "chunked": False,
        "content_length": str(len(body)),
    }
    assert chunked == {
        "sha256": expected,
        "size": len(body),
        "chunked": True,
        "content_length": None,
    }


async def test_response_bodies_with_content_length_and_chunked_arrive_intact() -> None:
    body = os.urandom(3 * MiB + 5)

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        if request.raw_path == "/sized":
            return web.Response(body=body)
        response = web.StreamResponse()
        await response.prepare(request)
        async for chunk in chunks(body):
            await response.write(chunk)
        await response.write_eof()
        return response

    async with FakeUpstream(answer) as upstream, running_proxy(route(upstream.url)) as proxy:
        sized = await raw_request(proxy, get("/api/sized"))
        chunked = await raw_request(proxy, get("/api/chunked"))
    assert sized.headers["Content-Length"] == str(len(body))
    assert sized.body == body
    assert chunked.headers["Transfer-Encoding"] == "chunked"
    assert chunked.body == body


# ---- streaming, both ways -----------------------------------------------------------------------


async def test_large_upload_streams_through_without_buffering() -> None:
    first_chunk_arrived = asyncio.Event()

    async def upload() -> AsyncIterator[bytes]:
        yield large_chunk(0)
        # A buffering proxy would wait for the whole body before sending anything: deadlock.
        await asyncio.wait_for(first_chunk_arrived.wait(), BOUND)
        for index in range(1, LARGE_CHUNKS):
            yield large_chunk(index)

    async def receive(request: web.BaseRequest) -> web.StreamResponse:
        sha, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_any():
            first_chunk_arrived.set()
            sha.update(chunk)
            size += len(chunk)
        return web.json_response({"sha256": sha.hexdigest(), "size": size})

    async with (
        FakeUpstream(receive) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        headers = {"Content-Length": str(LARGE_CHUNKS * MiB)}
        async with client.put(at(proxy, "/api/big"), data=upload(), headers=headers) as response:
            answer = await asyncio.wait_for(response.json(), 4 * BOUND)
    assert answer == {"sha256": LARGE_SHA256, "size": LARGE_CHUNKS * MiB}


async def test_large_download_streams_through_without_buffering() -> None:
    first_chunk_read = asyncio.Event()

    async def download(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(large_chunk(0))
        await asyncio.wait_for(first_chunk_read.wait(), BOUND)
        for index in range(1, LARGE_CHUNKS):
            await response.write(large_chunk(index))
        await response.write_eof()
        return response

    sha, size = hashlib.sha256(), 0
    async with (
        FakeUpstream(download) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.get(at(proxy, "/api/big")) as response,
    ):

        async def read_all() -> None:
            nonlocal size
            async for chunk in response.content.iter_any():
                first_chunk_read.set()
                sha.update(chunk)
                size += len(chunk)

        await asyncio.wait_for(read_all(), 4 * BOUND)
    assert size == LARGE_CHUNKS * MiB
    assert sha.hexdigest() == LARGE_SHA256


async def test_server_sent_events_are_flushed_as_they_arrive() -> None:
    client_saw_first = asyncio.Event()

    async def events(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: one\n\n")
        await asyncio.wait_for(client_saw_first.wait(), BOUND)
        await response.write(b"data: two\n\n")
        await response.write_eof()
        return response

    async with (
        FakeUpstream(events) as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
        client.get(at(proxy, "/api/events")) as response,
    ):
        assert response.headers["Content-Type"] == "text/event-stream"
        first = await asyncio.wait_for(response.content.readuntil(b"\n\n"), BOUND)
        client_saw_first.set()
        rest = await asyncio.wait_for(response.content.read(), BOUND)
    assert first == b"data: one\n\n"
    assert rest == b"data: two\n\n"


async def test_gzip_passes_through_untouched() -> None:
    compressed = gzip.compress(b'{"hello": "world"}' * 1000)

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        assert request.headers.get("Accept-Encoding") == "gzip"
        return web.Response(
            body=compressed,
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async with FakeUpstream(answer) as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/z", "Accept-Encoding: gzip"))
    assert response.status == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Content-Length"] == str(len(compressed))
    assert response.body == compressed


async def test_no_headers_are_invented_for_the_upstream() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        await raw_request(proxy, get("/api/x"))
    seen = upstream.requests[0].headers
    for name in ("User-Agent", "Accept", "Accept-Encoding", "Content-Type", "Cookie"):
        assert name not in seen, name


async def test_expect_100_continue() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url)) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(
            b"POST /api/c HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n"
            b"Expect: 100-continue\r\nConnection: close\r\n\r\n"
        )
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), BOUND)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        writer.write(b"hello")
        response = await asyncio.wait_for(read_response(reader), BOUND)
    assert response.status == 200
    assert json.loads(response.body)["body"] == "hello"
    assert "Expect" not in upstream.requests[0].headers


async def test_keep_alive_connections_to_the_upstream_are_reused() -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        for index in range(30):
            async with client.post(at(proxy, f"/api/{index}"), data=b"x" * index) as response:
                assert response.status == 200
                await response.read()
    assert len(upstream.requests) == 30
    assert upstream.connections == 1


# ---- upstream failures --------------------------------------------------------------------------


def assert_problem(body: bytes, status: int, route_name: str = "api") -> None:
    problem = json.loads(body)
    assert problem["status"] == status
    assert problem["route"] == route_name
    assert {"type", "title", "detail"} <= problem.keys()
    assert "Traceback" not in body.decode()


async def test_refused_connection_is_a_502_problem() -> None:
    async with FakeUpstream() as gone:
        url = gone.url
    async with proxy_with_healthy(route(url)) as proxy:
        response = await raw_request(proxy, get("/api/x"))
        assert response.status == 502
        assert response.headers["Content-Type"] == "application/problem+json"
        assert_problem(response.body, 502)
        await survives(proxy)


async def test_upstream_hanging_past_the_read_timeout_is_a_504() -> None:
    release = asyncio.Event()

    async def hang(_request: web.BaseRequest) -> web.StreamResponse:
        await release.wait()
        return web.Response(text="too late")

    async with FakeUpstream(hang) as upstream:
        try:
            async with proxy_with_healthy(route(upstream.url, read_timeout=0.2)) as proxy:
                response = await raw_request(proxy, get("/api/slow"))
                assert response.status == 504
                assert_problem(response.body, 504)
                await survives(proxy)
        finally:
            release.set()


async def reset_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    if b"/chunked" in request.split(b"\r\n", 1)[0]:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"a" * 1024)
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1024)
    await writer.drain()
    transport = writer.transport
    assert isinstance(transport, asyncio.Transport)
    transport.abort()


@pytest.mark.parametrize("path", ["/api/sized", "/api/chunked"])
async def test_upstream_reset_mid_body_truncates_the_clients_body(path: str) -> None:
    async with (
        RawUpstream(reset_mid_body) as upstream,
        proxy_with_healthy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        async with client.get(at(proxy, path)) as response:
            assert response.status == 200
            with pytest.raises(ClientPayloadError):
                await asyncio.wait_for(response.read(), BOUND)
        await survives(proxy)


async def test_garbage_from_the_upstream_is_a_502() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HELLO\r\n\r\n")
        await writer.drain()

    async with RawUpstream(garbage) as upstream, proxy_with_healthy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x"))
        assert response.status == 502
        assert_problem(response.body, 502)
        await survives(proxy)


async def test_client_disconnect_cancels_the_upstream_request() -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def wait_forever(_request: web.BaseRequest) -> web.StreamResponse:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        raise AssertionError("unreachable")

    async with (
        FakeUpstream(wait_forever, cancel_on_disconnect=True) as upstream,
        proxy_with_healthy(route(upstream.url)) as proxy,
    ):
        async with raw_connection(proxy) as (_reader, writer):
            writer.write(get("/api/wait"))
            await asyncio.wait_for(started.wait(), BOUND)
        await asyncio.wait_for(cancelled.wait(), BOUND)
        await survives(proxy)
