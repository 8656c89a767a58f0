"""The forwarding client on real sockets: keep-alive, framing both ways, back-pressure, failures.

Upstreams are aiohttp servers or raw asyncio scripts on 127.0.0.1:0. Flow control is proven with
the server's own `pause_writing` callback, never with timing: the server stops only once every
buffer between it and the client is full, and then the client must hold a bounded amount.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.base_protocol import BaseProtocol
from aiohttp.streams import StreamReader
from certs import make_certificates
from fakes import BOUND, FakeUpstream, RawUpstream, route
from multidict import CIMultiDict
from yarl import URL

from authproxy.errors import (
    BodyCutShort,
    CertificateRejected,
    ConnectFailed,
    InvalidAnswer,
    SendFailed,
    TimedOut,
)
from authproxy.settings import Timeouts
from authproxy.upstream.busy_poll import BusyPoll
from authproxy.upstream.client import OriginClient
from authproxy.upstream.connection import HIGH_WATER
from authproxy.upstream.pool import UpstreamPool
from authproxy.upstream.request import RequestBody, StreamedBody
from authproxy.upstream.response import UpstreamResponse

MiB = 1024 * 1024
TIMEOUTS = Timeouts(connect=5.0, read=BOUND)
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_all(response: UpstreamResponse) -> bytes:
    out = bytearray()
    while chunk := await asyncio.wait_for(response.read_chunk(), BOUND):
        out += chunk
    return bytes(out)


async def fetch(
    client: OriginClient,
    target: str = "/",
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: RequestBody = None,
    timeouts: Timeouts = TIMEOUTS,
) -> tuple[UpstreamResponse, bytes]:
    response = await client.request(method, target, CIMultiDict(headers or {}), body, timeouts)
    try:
        return response, await read_all(response)
    finally:
        response.release()


@asynccontextmanager
async def client_for(
    url: URL, context: ssl.SSLContext | None = None
) -> AsyncIterator[OriginClient]:
    client = OriginClient(url, context)
    try:
        yield client
    finally:
        client.close()


def stream_of(*parts: bytes) -> StreamReader:
    """An aiohttp StreamReader already holding `parts`, as a proxied request body would."""
    # A limit above the total: the reader never asks the (absent) transport to pause.
    reader = StreamReader(BaseProtocol(asyncio.get_running_loop()), sum(map(len, parts)) + 1)
    for part in parts:
        reader.feed_data(part)
    reader.feed_eof()
    return reader


# ---- keep-alive and framing on real sockets -----------------------------------------------------


async def test_keep_alive_connections_are_reused_and_bodies_arrive_both_framings() -> None:
    body = os.urandom(3 * MiB + 5)

    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        if request.path == "/sized":
            return web.Response(body=body)
        response = web.StreamResponse()
        await response.prepare(request)
        for start in range(0, len(body), 100_000):
            await response.write(body[start : start + 100_000])
        await response.write_eof()
        return response

    async with FakeUpstream(answer) as upstream, client_for(upstream.url) as client:
        sized, sized_body = await fetch(client, "/sized")
        chunked, chunked_body = await fetch(client, "/chunked")
        for _ in range(3):
            await fetch(client, "/sized")
    assert sized.length == len(body)
    assert sized_body == body
    assert chunked.length is None
    assert chunked_body == body
    assert upstream.connections == 1


async def digest(request: web.BaseRequest) -> web.StreamResponse:
    sha = hashlib.sha256()
    async for chunk in request.content.iter_any():
        sha.update(chunk)
    return web.json_response(
        {
            "sha256": sha.hexdigest(),
            "chunked": request.headers.get("Transfer-Encoding") == "chunked",
            "length": request.headers.get("Content-Length"),
        }
    )


async def test_request_bodies_go_out_sized_or_chunked() -> None:
    parts = [os.urandom(100_000) for _ in range(20)]
    whole = b"".join(parts)
    expected = hashlib.sha256(whole).hexdigest()
    async with FakeUpstream(digest) as upstream, client_for(upstream.url) as client:
        _, as_bytes = await fetch(client, method="POST", body=whole)
        sized_stream = StreamedBody(stream_of(*parts), len(whole))
        _, sized = await fetch(client, method="PUT", body=sized_stream)
        _, chunked = await fetch(client, method="POST", body=StreamedBody(stream_of(*parts)))
        _, empty = await fetch(client, method="POST")
    assert b'"chunked": false' in as_bytes
    assert expected.encode() in as_bytes
    assert b'"chunked": false' in sized
    assert expected.encode() in sized
    assert b'"chunked": true' in chunked
    assert expected.encode() in chunked
    assert b'"length": "0"' in empty
    assert upstream.connections == 1


async def test_the_client_frames_what_it_sends_whatever_the_headers_claim() -> None:
    heads: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head)
            length = int(head.lower().partition(b"content-length: ")[2].partition(b"\r")[0] or 0)
            await reader.readexactly(length)
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()

    claims = {"Content-Length": "3", "Transfer-Encoding": "chunked", "content-length": "9"}
    async with RawUpstream(script) as upstream, client_for(upstream.url) as client:
        await fetch(client, method="POST", headers=claims, body=b"hello")
        await fetch(client, method="POST", headers=claims, body=StreamedBody(stream_of(b"hi"), 2))
        await fetch(client, method="GET", headers=claims)
    framing = [
        [line for line in head.lower().split(b"\r\n") if line.startswith((b"content-", b"trans"))]
        for head in heads
    ]
    assert framing == [[b"content-length: 5"], [b"content-length: 2"], []]
    assert upstream.connections == 1


@pytest.mark.parametrize(
    ("parts", "declared"),
    [
        pytest.param((b"hello", b" and more"), 5, id="more-than-declared"),
        pytest.param((b"hel",), 5, id="fewer-than-declared"),
    ],
)
async def test_a_stream_that_breaks_its_declared_length_aborts_the_connection(
    parts: tuple[bytes, ...], declared: int
) -> None:
    received = bytearray()
    closed = asyncio.Event()

    async def record(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                received.extend(data)
        finally:
            closed.set()

    async with RawUpstream(record) as upstream, client_for(upstream.url) as client:
        with pytest.raises(SendFailed):
            await fetch(client, method="PUT", body=StreamedBody(stream_of(*parts), declared))
        await asyncio.wait_for(closed.wait(), BOUND)
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    assert b"Content-Length: 5" in head
    assert len(body) <= declared  # never a byte past the declared length


async def test_head_204_and_304_carry_no_body_and_keep_the_connection() -> None:
    async def answer(request: web.BaseRequest) -> web.StreamResponse:
        status = int(request.path.strip("/") or 200)
        return web.Response(status=status, body=None if status != 200 else b"x" * 10)

    async with FakeUpstream(answer) as upstream, client_for(upstream.url) as client:
        head, head_body = await fetch(client, method="HEAD")
        no_content, no_content_body = await fetch(client, "/204")
        not_modified, not_modified_body = await fetch(client, "/304")
        _, after = await fetch(client)
    assert head.headers["Content-Length"] == "10"
    assert head_body == b""
    assert (no_content.status, no_content_body) == (204, b"")
    assert (not_modified.status, not_modified_body) == (304, b"")
    assert after == b"x" * 10
    assert upstream.connections == 1


# One answer per request, in this order, all on one keep-alive connection: the answers whose
# end llhttp finds itself, and those it cannot (a HEAD's announced length) between them.
KEEP_ALIVE_ANSWERS = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n",  # to HEAD: no body follows
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nold",
    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
)


async def answer_in_turn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    for answer in KEEP_ALIVE_ANSWERS:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
    await reader.read()


async def test_one_connection_reads_answers_of_every_framing_in_turn() -> None:
    methods = ("GET", "HEAD", "GET", "GET", "GET", "GET", "GET")
    async with RawUpstream(answer_in_turn) as upstream, client_for(upstream.url) as client:
        answers = [await fetch(client, method=method) for method in methods]
    bodies = [body for _, body in answers]
    assert bodies == [b"first", b"", b"abc", b"", b"ok", b"old", b"last"]
    assert [answer.status for answer, _ in answers] == [200, 200, 200, 204, 200, 200, 200]
    assert upstream.connections == 1


GARBAGE_KINDS = ("UpstreamConnection", "AnswerParser", "HttpResponseParser", "ReadDeadline")


async def cyclic_garbage_of(client: OriginClient, requests: int) -> list[str]:
    """Names of our upstream objects that `requests` exchanges left for the cycle collector."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(requests):
            await fetch(client)
        await asyncio.sleep(0.05)  # closed transports report connection_lost on the next turns
        gc.collect()
        return [type(item).__name__ for item in gc.garbage if type(item).__name__ in GARBAGE_KINDS]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


async def test_exchanges_on_a_kept_connection_leave_no_garbage_cycles() -> None:
    """Each exchange's parsing state is freed as it is replaced, not left to the cycle
    collector: a cycle per request made the collector run every hundred or so requests."""

    async def ok(_request: web.BaseRequest) -> web.Response:
        return web.Response(body=b"x" * 100)

    async with FakeUpstream(ok) as upstream, client_for(upstream.url) as client:
        await fetch(client)
        left = await cyclic_garbage_of(client, 20)
    assert left == []
    assert upstream.connections == 1


async def test_connections_the_upstream_closes_leave_no_garbage_cycles() -> None:
    """An upstream that closes after every answer costs a connection per request: each is freed
    when it closes, with its parser and read timeout, not at the next cycle collection."""

    async def answer_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    async with RawUpstream(answer_and_close) as upstream, client_for(upstream.url) as client:
        await fetch(client)
        left = await cyclic_garbage_of(client, 10)
    assert left == []
    assert upstream.connections == 11


async def test_connection_close_http_10_and_repeated_headers_are_honoured() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b" /old " in request:
            writer.write(b"HTTP/1.0 200 OK\r\nX-Raw: caf\xe9\r\n\r\nuntil the close")
        else:
            writer.write(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nSet-Cookie: a=1\r\n"
                b"Set-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok"
            )
        await writer.drain()

    async with RawUpstream(script) as upstream, client_for(upstream.url) as client:
        closing, closing_body = await fetch(client, "/new")
        old, old_body = await fetch(client, "/old")
        await fetch(client, "/new")
    assert closing_body == b"ok"
    assert closing.headers.getall("Set-Cookie") == ["a=1", "b=2"]
    assert old_body == b"until the close"
    assert old.headers["X-Raw"].encode("utf-8", "surrogateescape") == b"caf\xe9"
    assert upstream.connections == 3


async def test_request_header_bytes_pass_through_as_received() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()

    # aiohttp's server decodes header bytes as UTF-8 with surrogateescape: undo exactly that.
    value = b"caf\xe9 \xe2\x82\xac".decode("utf-8", "surrogateescape")
    async with RawUpstream(script) as upstream, client_for(upstream.url) as client:
        await fetch(client, "/x?y=%2F", headers={"X-Raw": value})
    assert b"GET /x?y=%2F HTTP/1.1\r\nHost: 127.0.0.1:" in seen[0]
    assert b"\r\nX-Raw: caf\xe9 \xe2\x82\xac\r\n" in seen[0]


# ---- back-pressure ------------------------------------------------------------------------------


async def test_a_slow_reader_makes_the_client_stop_reading_not_buffer() -> None:
    size, block = 64 * MiB, os.urandom(MiB)

    async def firehose(request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(size)})
        await response.prepare(request)
        for _ in range(size // len(block)):
            await response.write(block)
        await response.write_eof()
        return response

    async with FakeUpstream(firehose) as upstream, client_for(upstream.url) as client:
        response = await client.request("GET", "/", CIMultiDict(), None, TIMEOUTS)
        connection = response.connection
        peak, paused = connection.buffered, asyncio.Event()
        receive = connection.data_received

        def watched(data: bytes) -> None:
            nonlocal peak
            receive(data)
            peak = max(peak, connection.buffered)
            if connection.reading_paused:
                paused.set()

        connection.data_received = watched  # type: ignore[method-assign]
        # Nobody reads yet: the client must stop reading the socket rather than buffer on.
        await asyncio.wait_for(paused.wait(), BOUND)
        body = await read_all(response)
        response.release()
    assert len(body) == size
    # At most the high-water mark plus one socket read (asyncio reads up to 256 KiB at a time).
    assert peak <= HIGH_WATER + 256 * 1024


# ---- failures -----------------------------------------------------------------------------------


async def cut_short(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    request = await reader.readuntil(b"\r\n\r\n")
    if b"/chunked" in request:
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n400\r\n" + b"a" * 1024)
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"a" * 1024)
    await writer.drain()
    writer.close()


async def read_until_failure(response: UpstreamResponse) -> tuple[bytes, Exception | None]:
    got = b""
    try:
        while chunk := await asyncio.wait_for(response.read_chunk(), BOUND):
            got += chunk
    except BodyCutShort as failure:
        return got, failure
    return got, None


@pytest.mark.parametrize("target", ["/sized", "/chunked"])
async def test_a_body_cut_short_is_an_error_after_what_did_arrive(target: str) -> None:
    async with RawUpstream(cut_short) as upstream, client_for(upstream.url) as client:
        response = await client.request("GET", target, CIMultiDict(), None, TIMEOUTS)
        got, failure = await read_until_failure(response)
        response.release()
    assert got == b"a" * 1024
    assert isinstance(failure, BodyCutShort)


async def test_garbage_refusal_and_silence_are_typed_failures() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HELLO\r\n\r\n")
        await writer.drain()
        await reader.read()

    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with RawUpstream(garbage) as upstream, client_for(upstream.url) as client:
        with pytest.raises(InvalidAnswer):
            await fetch(client)
    async with RawUpstream(silent) as upstream, client_for(upstream.url) as client:
        with pytest.raises(TimedOut):
            await fetch(client, timeouts=Timeouts(connect=5.0, read=0.05))
    async with FakeUpstream() as gone:
        refused = gone.url
    async with client_for(refused) as client:
        with pytest.raises(ConnectFailed):
            await fetch(client)


async def test_cancelling_a_request_closes_its_connection() -> None:
    arrived, closed = asyncio.Event(), asyncio.Event()

    async def hang(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        arrived.set()
        await reader.read()  # returns once the client closes
        closed.set()

    async with RawUpstream(hang) as upstream, client_for(upstream.url) as client:
        task = asyncio.get_running_loop().create_task(fetch(client), name="hanging-request")
        await asyncio.wait_for(arrived.wait(), BOUND)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(closed.wait(), BOUND)


async def test_a_pooled_connection_closed_by_the_upstream_is_replaced_once() -> None:
    answered = 0

    async def once_per_connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        nonlocal answered
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        answered += 1
        await reader.readuntil(b"\r\n\r\n")  # the next request: dropped unanswered

    async with RawUpstream(once_per_connection) as upstream, client_for(upstream.url) as client:
        await fetch(client)
        _, body = await fetch(client)
    assert body == b"ok"
    assert (answered, upstream.connections) == (2, 2)


# ---- TLS ----------------------------------------------------------------------------------------


async def test_tls_upstreams_are_verified(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server = web.Server(lambda _request: _ok())
    runner = web.ServerRunner(server, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_context)
    await site.start()
    port = runner.addresses[0][1]
    url = URL.build(scheme="https", host="127.0.0.1", port=port)
    try:
        trusting = ssl.create_default_context(cafile=str(ca))
        async with client_for(url, trusting) as client:
            response, body = await fetch(client)
        assert (response.status, body) == (200, b"over TLS")
        async with client_for(url, ssl.create_default_context()) as client:
            with pytest.raises(CertificateRejected):
                await fetch(client)
    finally:
        await runner.cleanup()


async def _ok() -> web.StreamResponse:
    return web.Response(body=b"over TLS")


# ---- busy polling -------------------------------------------------------------------------------


async def test_busy_polling_lasts_one_window_after_the_last_touch() -> None:
    now = [0.0]
    poll = BusyPoll(100e-6, clock=lambda: now[0])
    loop = asyncio.get_running_loop()
    poll.touch(loop)
    for _ in range(3):
        await asyncio.sleep(0)  # one loop iteration: the poller re-arms itself
        assert poll.active
    now[0] = 50e-6
    poll.touch(loop)  # extends the window to 150 µs
    now[0] = 120e-6
    await asyncio.sleep(0)
    assert poll.active
    now[0] = 151e-6
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not poll.active
    BusyPoll(0.0, clock=lambda: now[0]).touch(loop)  # off: schedules nothing


@pytest.mark.parametrize(("busy_poll_us", "polling"), [(None, False), (0, False), (100, True)])
async def test_busy_polling_is_off_unless_upstream_busy_poll_us_sets_it(
    busy_poll_us: int | None, polling: bool
) -> None:
    async with FakeUpstream() as upstream:
        routes = [route(upstream.url)]
        pool = (
            UpstreamPool(routes)
            if busy_poll_us is None
            else UpstreamPool(routes, busy_poll_us=busy_poll_us)
        )
        try:
            client = pool.client("api")
            await fetch(client)
            client.keep_polling()  # what the forwarder does as an answer goes out
            assert client.polling is polling
        finally:
            await pool.close()


async def test_a_reused_connection_takes_the_read_timeout_of_its_new_request() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while b"/slow" not in await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        await reader.read()  # never answers /slow

    patient, impatient = Timeouts(read=3600.0), Timeouts(read=0.05)
    async with RawUpstream(script) as upstream, client_for(upstream.url) as client:
        await fetch(client, "/fast", timeouts=patient)
        with pytest.raises(TimedOut):
            # The bound trips only if the hour-long timer of the first request still rules.
            await asyncio.wait_for(fetch(client, "/slow", timeouts=impatient), BOUND)
    assert upstream.connections == 1
