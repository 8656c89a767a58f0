"""Request smuggling: what reaches the upstream is exactly what the client framed, byte for byte.

The upstream here is `RecordingUpstream`: it records every byte and frames requests strictly, so a
request hidden inside another one's body shows up as a request of its own.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from fakes import BOUND, auth_route, raw_connection, read_response, route, running_proxy
from yarl import URL

from tools.recording_upstream import RecordingUpstream

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: upstream.test\r\n\r\n"
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": lambda data: gzip.compress(data, mtime=0),
    "deflate": zlib.compress,
}


def inflating_into_a_request(encoding: str) -> bytes:
    """A compressed body N bytes long whose inflated form is N bytes of filler and then SMUGGLED:
    a proxy that inflates it but sends the client's Content-Length hands the upstream a request."""
    compress = COMPRESSORS[encoding]
    for size in range(400):
        body = compress(b"a" * size + SMUGGLED)
        if len(body) == size:
            return body
    raise AssertionError("no fixed point")


@asynccontextmanager
async def proxy_before(upstream: RecordingUpstream, **settings: object) -> AsyncIterator[URL]:
    """A proxy with a plain route (`/plain`, bodies stream) and a route with static auth (`/auth`,
    small bodies are buffered for a replay), both to `upstream`."""
    async with running_proxy(
        route(upstream.url, "/plain"), auth_route(upstream.url), **settings
    ) as proxy:
        yield proxy


def post(path: str, body: bytes, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: proxy.test", f"Content-Length: {len(body)}", *headers]
    return "\r\n".join([*lines, "", ""]).encode() + body


@pytest.mark.parametrize("route", ["plain", "auth"])
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
async def test_a_compressed_body_passes_untouched_and_smuggles_nothing(
    route: str, encoding: str
) -> None:
    body = inflating_into_a_request(encoding)
    async with (
        RecordingUpstream() as upstream,
        proxy_before(upstream) as proxy,
        raw_connection(proxy) as (reader, writer),
    ):
        writer.write(post(f"/{route}/upload", body, f"Content-Encoding: {encoding}"))
        # The same client connection, then another route to the same origin: both go over the
        # upstream connection the first request used, and must arrive as sent.
        writer.write(b"GET /plain/next HTTP/1.1\r\nHost: proxy.test\r\n\r\n")
        writer.write(b"GET /auth/last HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n")
        answers = [await asyncio.wait_for(read_response(reader), BOUND) for _ in range(3)]
    assert [answer.status for answer in answers] == [200, 200, 200]
    assert [(seen.method, seen.target) for seen in upstream.requests] == [
        ("POST", "/upload"),
        ("GET", "/next"),
        ("GET", "/last"),
    ]
    first = upstream.requests[0]
    assert first.body == body
    assert first.header("Content-Length") == [str(len(body))]
    assert first.header("Content-Encoding") == [encoding]
    assert upstream.problems == []
    assert upstream.leftovers == []
    assert len(upstream.connections) == 1
