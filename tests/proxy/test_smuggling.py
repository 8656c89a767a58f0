"""Request smuggling: what reaches the upstream is exactly what the client framed, byte for byte.

The upstream here is `RecordingUpstream`: it records every byte and frames requests strictly, so a
request hidden inside another one's body shows up as a request of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fakes import BOUND, auth_route, raw_connection, read_response, route, running_proxy
from yarl import URL

from tools.recording_upstream import RecordingUpstream
from tools.smuggle_audit import audit, run_probe
from tools.smuggling_probes import DEFLATE_BODY, FAST, GZIP_BODY, by_name

# Compressed bodies whose inflated form is a filler the size of the body, then a request.
BODIES = {"gzip": GZIP_BODY, "deflate": DEFLATE_BODY}


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
    body = BODIES[encoding]
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


@pytest.mark.parametrize("name", FAST)
async def test_smuggling_probe(name: str) -> None:
    """A quick subset of `make audit`'s probes (tools/smuggling_probes.py), in process."""
    probe = by_name(name)
    async with RecordingUpstream() as upstream, proxy_before(upstream) as proxy:
        outcome = await run_probe(proxy, upstream, probe, 0)
    assert outcome.problems == ()
    assert probe.accepts(outcome.seen), outcome.seen


async def test_make_audit_runs_its_probes_through_a_real_serve_process() -> None:
    """`make audit` is not part of `make test`; its own set-up (a config of its own, a real
    `authproxy serve` subprocess) must keep working as the proxy's rules change."""
    names = ["get", "pipelined", "auth:gzip-inflates-to-a-request", "cl-te", "te:xchunked"]
    assert await audit(names) == 0
