"""Upstreams that misbehave: odd framing, floods of interim answers, oversized heads.

The client always gets one honest framing (exactly one Content-Length, or chunked), a 502 for an
answer that cannot be framed, and a connection whose framing was doubtful is never used again.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest
from fakes import RawUpstream, get, raw_request, route, running_proxy

from authproxy.errors import InvalidAnswer
from authproxy.upstream.answer import MAX_FRAMING, MAX_HEAD, MAX_INTERIM, AnswerParser


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


async def test_a_body_after_a_head_answer_is_never_read_as_the_next_answer() -> None:
    # The parser expects the 5 bytes a GET would get; the answer to HEAD has none (RFC 9112 §6.3).
    answers = {"/h": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHTTP/", "/next": OK}
    async with answering(answers) as upstream, running_proxy(route(upstream.url)) as proxy:
        head = await raw_request(proxy, get("/api/h").replace(b"GET", b"HEAD", 1), head_only=True)
        after = await raw_request(proxy, get("/api/next"))
    assert head.headers.getall("Content-Length") == ["5"]
    assert (after.status, after.body) == (200, b"ok")
    assert upstream.connections == 2


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


def read(answer: bytes, method: str = "GET", step: int = 0) -> tuple[AnswerParser, bytes]:
    """`answer` fed to a parser whole, or `step` bytes at a time; the parser and the body."""
    body: deque[bytes] = deque()
    parser = AnswerParser(method, body)
    step = step or len(answer)
    for start in range(0, len(answer), step):
        parser.feed(answer[start : start + step])
    return parser, b"".join(body)


def head_of(answer: bytes, method: str = "GET") -> AnswerParser:
    parser, _ = read(answer + b"\r\n\r\n", method)
    assert parser.head is not None
    return parser


def test_framing_follows_rfc_9112() -> None:
    sized = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1")
    assert sized.head is not None
    assert (sized.head.length, sized.head.chunked, sized.head.keep_alive) == (5, False, True)
    assert sized.head.headers == [("Content-Length", "5"), ("Set-Cookie", "a=1")]
    head = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5", "HEAD")
    assert (head.complete, head.reusable) == (True, True)
    not_modified = head_of(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5")
    assert (not_modified.complete, not_modified.reusable) == (True, True)
    to_close = head_of(b"HTTP/1.0 200 OK")
    assert to_close.until_close
    kept, _ = read(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")
    assert kept.reusable
    closing, _ = read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert (closing.complete, closing.reusable) == (True, False)
    folded = head_of(b"HTTP/1.1 200 OK\nX-A: one\n two\nContent-Length: 0")
    assert folded.head is not None
    assert folded.head.headers[0] == ("X-A", "one two")
    assert not folded.reusable  # bare LF line ends


@pytest.mark.parametrize(
    "head",
    [
        b"HELLO",
        b"HTTP/1.1 2000 OK",
        b"HTTP/2.0 200 OK",
        b"HTTP/1.1 200 O\x01K",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000",
        b"HTTP/1.1 200 OK\r\nBad Name: x",
        b"HTTP/1.1 200 OK\r\nX: a\x00b",
        b"HTTP/1.1 200 OK\r\nX: a\rb",
        b"HTTP/1.1 200 OK\n X: a",
    ],
)
def test_invalid_heads_are_refused(head: bytes) -> None:
    with pytest.raises(InvalidAnswer):
        read(head + b"\r\n\r\n")


def test_chunked_bodies_survive_any_split_and_bytes_after_them_are_not_trusted() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nTrailer: x\r\n\r\n"
    )
    for step in (1, 2, 3, 7, len(answer)):
        parser, body = read(answer, step=step)
        assert (parser.complete, parser.reusable, body) == (True, True, b"hello world!")
        assert parser.head is not None
        assert ("Trailer", "x") not in parser.head.headers
        parser, body = read(answer + b"HTTP/1.1 200 OK\r\n", step=step)
        assert (parser.complete, parser.reusable, body) == (True, False, b"hello world!")


def test_sized_bodies_survive_any_split_and_bytes_after_them_are_not_trusted() -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nhello world!"
    for step in (1, 2, 3, 7, 40, len(answer)):
        parser, body = read(answer, step=step)
        assert (parser.complete, parser.reusable, body) == (True, True, b"hello world!")
        assert parser.body_bytes == 12
        parser, body = read(answer + b"HTTP/1.1 200 OK\r\n", step=step)
        assert (parser.complete, parser.reusable, body) == (True, False, b"hello world!")
        parser, body = read(answer[:-1], step=step)
        assert (parser.complete, body) == (False, b"hello world")


@pytest.mark.parametrize("step", [1, 5, 40, 0])
def test_an_interim_answer_with_a_body_is_refused(step: int) -> None:
    # llhttp reads this 150's Content-Length body; counted as the final answer's, it made the
    # answer wrong, or (the final body arriving in later reads) never complete.
    answer = (
        b"HTTP/1.1 150 Interim\r\nContent-Length: 3\r\n\r\nabc"
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    )
    with pytest.raises(InvalidAnswer):
        read(answer, step=step)


def test_a_head_answer_never_has_a_body_and_bytes_after_it_are_not_trusted() -> None:
    parser, body = read(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "HEAD")
    assert (parser.complete, parser.reusable, body) == (True, False, b"")
    chunked, _ = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD")
    assert (chunked.complete, chunked.reusable) == (True, True)


def test_chunk_framing_is_strict_and_bounded() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    # Bare LF after a chunk size: llhttp refuses it in every mode, and so does the proxy.
    with pytest.raises(InvalidAnswer):
        read(chunked + b"5\nhello\r\n0\r\n\r\n")
    # Trailers are dropped, and an endless stream of them is refused.
    trailers = b"5\r\nhello\r\n0\r\n" + b"X-Trailer: aaaaaaaaaaaaaaaa\r\n" * 4096
    with pytest.raises(InvalidAnswer):
        read(chunked + trailers, step=4096)
    assert len(trailers) > MAX_FRAMING


def test_the_head_limit_counts_every_head_of_an_answer() -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: <" + b"a" * 8000 + b">\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    parser, body = read(interim * 3 + final)
    assert (parser.complete, body) == (True, b"ok")
    too_many = MAX_HEAD // len(interim) + 1
    assert too_many <= MAX_INTERIM  # refused for their size, not their number
    with pytest.raises(InvalidAnswer):
        read(interim * too_many + final)


def test_framing_of_doubtful_heads() -> None:
    repeated = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5")
    assert repeated.head is not None
    assert (repeated.head.length, repeated.head.content_length, repeated.doubtful) == (5, 5, True)
    both = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked")
    assert both.head is not None
    assert (both.head.chunked, both.head.content_length, both.doubtful) == (True, None, True)
    twice = head_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked")
    assert twice.head is not None
    assert not twice.head.keep_alive
    empty_te = head_of(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\nContent-Length: 2")
    assert empty_te.head is not None
    assert (empty_te.head.length, empty_te.until_close, empty_te.doubtful) == (None, True, True)
    no_content = head_of(b"HTTP/1.1 204 No Content\r\nContent-Length: 5")
    assert no_content.head is not None
    assert (no_content.head.bodyless, no_content.head.content_length) == (True, None)
    clean = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 5")
    assert clean.head is not None
    assert (clean.head.length, clean.head.content_length, clean.doubtful) == (5, 5, False)


def test_a_careful_reading_survives_any_split_and_keeps_the_head_limit() -> None:
    # Bare LF line ends: llhttp refuses the first head, and the careful reading takes over.
    interim = b"HTTP/1.1 103 Early Hints\nLink: </a>\n\n"
    answer = interim + b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello"
    for step in (1, 2, 5, len(answer)):
        parser, body = read(answer, step=step)
        assert (parser.complete, parser.doubtful, parser.reusable) == (True, True, False)
        assert body == b"hello"
    # After the interim head, part of the final one: the connection's end would cut a head.
    partial, _ = read(interim + b"HTTP/1.1 200 OK\nContent-")
    assert (partial.head, partial.midway) == (None, True)
    big = b"HTTP/1.1 103 Early Hints\nLink: <" + b"a" * 8000 + b">\n\n"
    with pytest.raises(InvalidAnswer):
        read(big * (MAX_HEAD // len(big) + 1) + b"HTTP/1.1 200 OK\n\n", step=4096)
    with pytest.raises(InvalidAnswer):  # a head that never ends
        read(b"HTTP/1.1 200 OK\nX-Long: " + b"a" * MAX_HEAD, step=4096)
