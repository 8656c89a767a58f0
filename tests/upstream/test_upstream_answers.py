"""Upstreams that misbehave: odd framing, floods of interim answers, oversized heads.

The client always gets one honest framing (exactly one Content-Length, or chunked), a 502 for an
answer that cannot be framed, and a connection whose framing was doubtful is never used again.
"""

from __future__ import annotations

import asyncio

import pytest
from fakes import RawUpstream, get, raw_request, route, running_proxy

from authproxy.upstream.http1 import MAX_HEAD, MAX_INTERIM, parse_head


def answering(answers: dict[str, bytes]) -> RawUpstream:
    """A raw upstream answering each request on a connection with `answers[path]`, keep-alive."""

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            path = head.split(b" ", 2)[1].decode()
            writer.write(answers[path])
            await writer.drain()

    return RawUpstream(script)


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


# ---- response framing (RFC 9112 §6.3) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "length"),
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\nhello", "5", id="list"),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "5",
            id="repeated",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            None,
            id="te-and-cl",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n"
            b"5\r\nhello\r\n0\r\n\r\n",
            None,
            id="cl-after-te",
        ),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 005\r\n\r\nhello", "5", id="zeros"),
    ],
)
async def test_the_client_gets_one_honest_length_and_the_connection_is_not_reused(
    answer: bytes, length: str | None
) -> None:
    async with (
        answering({"/odd": answer, "/next": OK}) as upstream,
        running_proxy(route(upstream.url)) as proxy,
    ):
        odd = await raw_request(proxy, get("/api/odd"))
        after = await raw_request(proxy, get("/api/next"))
    assert odd.status == 200
    assert odd.body == b"hello"
    assert odd.headers.getall("Content-Length", []) == ([length] if length else [])
    if length is None:
        assert odd.headers["Transfer-Encoding"] == "chunked"
    assert after.body == b"ok"
    assert upstream.connections == (1 if answer.endswith(b"005\r\n\r\nhello") else 2)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello", id="conflicting"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", id="signed"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\nhello", id="hex"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 5 5\r\n\r\nhello", id="two-in-one"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1" + b"0" * 30 + b"\r\n\r\n", id="huge"),
        pytest.param(b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", id="status-below-100"),
        pytest.param(b"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n", id="status-above-599"),
    ],
)
async def test_an_answer_that_cannot_be_framed_is_a_502(answer: bytes) -> None:
    async with (
        answering({"/bad": answer, "/next": OK}) as upstream,
        running_proxy(route(upstream.url)) as proxy,
    ):
        bad = await raw_request(proxy, get("/api/bad"))
        after = await raw_request(proxy, get("/api/next"))
    assert bad.status == 502
    assert bad.headers["Content-Type"] == "application/problem+json"
    assert after.body == b"ok"


async def test_head_and_304_carry_the_announced_length_once() -> None:
    answers = {
        "/h": b"HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n",
        "/304": b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\nContent-Length: 7\r\n\r\n",
    }
    async with answering(answers) as upstream, running_proxy(route(upstream.url)) as proxy:
        head = await raw_request(proxy, get("/api/h").replace(b"GET", b"HEAD", 1), head_only=True)
        not_modified = await raw_request(proxy, get("/api/304"))
    assert head.headers.getall("Content-Length") == ["7"]
    assert not_modified.status == 304
    # aiohttp leaves a 304's length out (RFC 9110 §8.6 allows both); never two.
    assert not_modified.headers.getall("Content-Length", []) in ([], ["7"])


# ---- doubtful framing: read once, never reused ---------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok", id="bare-lf"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\nok", id="bare-lf-at-the-end"),
        pytest.param(b"HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 2\r\n\r\nok", id="one-bare-lf"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length:\r\n 2\r\n\r\nok", id="folded-length"),
        pytest.param(
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2\r\nok\r\n0\r\n\r\n",
            id="te-in-http-1.0",
        ),
        pytest.param(
            b"HTTP/1.1 100 Continue\nX: y\n\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
            id="bare-lf-interim",
        ),
    ],
)
async def test_a_doubtful_answer_is_relayed_but_its_connection_is_not_reused(answer: bytes) -> None:
    async with (
        answering({"/doubtful": answer, "/next": OK}) as upstream,
        running_proxy(route(upstream.url)) as proxy,
    ):
        doubtful = await raw_request(proxy, get("/api/doubtful"))
        after = await raw_request(proxy, get("/api/next"))
    assert (doubtful.status, doubtful.body) == (200, b"ok")
    assert after.body == b"ok"
    assert upstream.connections == 2


async def test_a_body_holding_a_head_after_a_bare_lf_head_is_not_read_as_headers() -> None:
    # The head ends at the first empty line (bare LF); the CRLFCRLF later on is body.
    answer = b"HTTP/1.1 200 OK\nContent-Length: 25\n\nX-Injected: 1\r\nX-B: 2\r\n\r\n"
    async with answering({"/x": answer}) as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x"))
    assert response.body == b"X-Injected: 1\r\nX-B: 2\r\n\r\n"
    assert "X-Injected" not in response.headers


# ---- floods and oversized heads ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interim", "status"),
    [(MAX_INTERIM, 200), (MAX_INTERIM + 1, 502), (5000, 502)],
)
async def test_interim_answers_are_capped(interim: int, status: int) -> None:
    # All in one write: a proxy that recursed once per interim answer hit RecursionError.
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" * interim + OK
    async with answering({"/x": answer}) as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x"))
    assert response.status == status


async def test_an_oversized_head_is_a_502_even_when_complete() -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * MAX_HEAD + b"\r\n" + OK.partition(b"\r\n")[2]
    async with answering({"/x": answer}) as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(proxy, get("/api/x"))
    assert response.status == 502


# ---- the parser, without sockets -----------------------------------------------------------------


def test_framing_of_doubtful_heads() -> None:
    repeated = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5", "GET")
    assert (repeated.length, repeated.content_length, repeated.keep_alive) == (5, 5, False)
    both = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked", "GET")
    assert (both.chunked, both.content_length, both.keep_alive) == (True, None, False)
    twice = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked", "GET")
    assert not twice.keep_alive
    empty_te = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2", "GET")
    assert (empty_te.length, empty_te.keep_alive) == (None, False)
    no_content = parse_head(b"HTTP/1.1 204 No Content\r\nContent-Length: 5", "GET")
    assert (no_content.bodyless, no_content.content_length) == (True, None)
    clean = parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 5", "GET")
    assert (clean.length, clean.content_length, clean.keep_alive) == (5, 5, True)
