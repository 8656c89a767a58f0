"""The rendered log, read back as JSON lines: one access event per request, and no secret in it.

`capture_logs` would swap out the configured processors, redaction included, so these tests
configure the real pipeline into a StringIO and search what it rendered.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from typing import Any

import structlog
from aiohttp import ClientSession, web
from fakes import FakeUpstream, RawUpstream, get, raw_request, route, running_proxy

from authproxy.logs.setup import JsonLine, configure_logging
from authproxy.secrets import Secret

SECRET = "sup3r-s3cret-value"
Secret(SECRET)  # registered for redaction, as config loading does for every credential
BEARER = "bearer-tok-7f3a9c1e55"
COOKIE = "sid-cookie-0b1d2e3f44"
QUERY_VALUE = "query-value-a1b2c3"


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def access_events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [event for event in events(stream) if event.get("event") == "request"]


async def test_one_access_event_per_request_with_every_field(log_stream: io.StringIO) -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url)) as proxy,
        ClientSession() as client,
    ):
        async with client.get(proxy.with_path("/api/items").with_query(q=QUERY_VALUE, b="2")) as r:
            get_body, get_id = await r.read(), r.headers["X-Request-Id"]
        async with client.post(proxy.with_path("/api/items"), data=b"hello") as r:
            post_body, post_id = await r.read(), r.headers["X-Request-Id"]
        async with client.get(proxy.with_path("/nowhere")) as r:
            missing_body, missing_id = await r.read(), r.headers["X-Request-Id"]
    logged = access_events(log_stream)
    assert len(logged) == 3
    first, second, third = logged
    assert first["request_id"] == get_id
    assert first["route"] == "api"
    assert first["method"] == "GET"
    assert first["path"] == "/api/items?q=<redacted>&b=<redacted>"
    assert first["status"] == 200
    assert first["bytes_in"] == 0
    assert first["bytes_out"] == len(get_body)
    assert second["request_id"] == post_id
    assert (second["method"], second["status"]) == ("POST", 200)
    assert second["bytes_in"] == 5
    assert second["bytes_out"] == len(post_body)
    for event in (first, second):
        assert isinstance(event["upstream_ms"], float | int)
        assert event["total_ms"] >= event["upstream_ms"] >= 0
    assert third["request_id"] == missing_id
    assert third["route"] is None
    assert third["status"] == 404
    assert third["bytes_out"] == len(missing_body)
    assert third["upstream_ms"] is None
    assert QUERY_VALUE not in log_stream.getvalue()


async def test_secrets_in_paths_and_headers_never_reach_the_log(log_stream: io.StringIO) -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        response = await raw_request(
            proxy,
            get(
                f"/api/items/{SECRET}?token={SECRET}",
                f"Authorization: Bearer {BEARER}",
                f"Cookie: {COOKIE}",
                f"X-Api-Token: {SECRET}",
            ),
        )
    assert response.status == 200
    assert upstream.requests[0].raw_path == f"/items/{SECRET}?token={SECRET}"
    (event,) = access_events(log_stream)
    assert event["path"] == "/api/items/<redacted>?token=<redacted>"
    rendered = log_stream.getvalue()
    for leak in (SECRET, BEARER, COOKIE):
        assert leak not in rendered


async def test_secrets_in_upstream_failures_never_reach_the_log(log_stream: io.StringIO) -> None:
    async def leaky(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if b"/garbage" in request:
            writer.write(f"{SECRET}\r\n\r\n".encode())
        else:
            # A reason phrase with the secret, then a body cut short.
            writer.write(f"HTTP/1.1 200 {SECRET}\r\nContent-Length: 99\r\n\r\n{SECRET}".encode())
        await writer.drain()

    async def refuse(_request: web.BaseRequest) -> web.StreamResponse:
        raise AssertionError("never reached")

    async with FakeUpstream(refuse) as gone:
        closed = gone.url.with_path(f"/{SECRET}")
    async with (
        RawUpstream(leaky) as upstream,
        running_proxy(
            route(upstream.url), route(closed, "/closed", name="closed", base=f"/{SECRET}")
        ) as proxy,
    ):
        assert (await raw_request(proxy, get("/api/garbage"))).status == 502
        assert (await raw_request(proxy, get("/closed/x"))).status == 502
        cut = await raw_request(proxy, get("/api/cut"), head_only=True)
        assert cut.status == 200
    rendered = log_stream.getvalue()
    assert "upstream failed mid-body" in rendered
    assert len(access_events(log_stream)) == 3
    assert SECRET not in rendered


def test_error_texts_and_tracebacks_are_scrubbed(log_stream: io.StringIO) -> None:
    """Exceptions carry upstream text (URLs, status lines): every rendering path is scrubbed."""
    error = ConnectionError(f"cannot reach http://user:{SECRET}@upstream/")
    log = structlog.get_logger("authproxy.test")
    log.warning("as a value", error=error, detail=str(error))
    try:
        raise error
    except ConnectionError:
        log.exception("as a traceback")
        logging.getLogger("aiohttp.server").exception("stdlib traceback")
    log.info("headers", headers={"Authorization": f"Bearer {BEARER}", "Cookie": COOKIE})
    rendered = log_stream.getvalue()
    assert len(events(log_stream)) == 4
    assert "cannot reach" in rendered
    for leak in (SECRET, BEARER, COOKIE):
        assert leak not in rendered


def test_configuring_again_takes_effect(log_stream: io.StringIO) -> None:
    """A logger used under one configuration follows the next (tests and the CLI reconfigure)."""
    log = structlog.get_logger("authproxy.test")
    log.info("first")
    second = io.StringIO()
    configure_logging(json=True, stream=second)
    log.info("second")
    assert [event["event"] for event in events(log_stream)] == ["first"]
    assert [event["event"] for event in events(second)] == ["second"]


def test_log_writes_stay_within_one_atomic_pipe_write_and_split_at_line_ends() -> None:
    from authproxy.logs.writer import PIPE_BUF, _pipe_sized

    lines = [f'{{"n": {i}, "pad": "{"x" * 300}"}}' for i in range(40)]
    chunks = _pipe_sized(lines)
    assert len(chunks) > 1
    assert all(len(chunk.encode()) <= PIPE_BUF for chunk in chunks)
    assert all(chunk.endswith("\n") for chunk in chunks)
    assert "".join(chunks).splitlines() == lines


async def test_malformed_requests_from_one_peer_log_a_few_lines_then_a_summary(
    log_stream: io.StringIO,
) -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        for _ in range(20):
            assert (await raw_request(proxy, b"G@T / HTTP/1.1\r\nHost: p\r\n\r\n")).status == 400
    rejected = [e for e in events(log_stream) if e["event"] == "rejected a malformed request"]
    assert len(rejected) == 3
    assert rejected[0]["peer"] == "127.0.0.1"
    [summary] = [e for e in events(log_stream) if e["event"].startswith("repeated warnings")]
    assert summary["held"] == {"rejected a malformed request": 17}


def test_json_lines_read_as_json_dumps_writes_them() -> None:
    class Described:
        def __structlog__(self) -> str:
            return "described"

    event = {
        "text": 'é \u2028 \x00 "quoted"',
        "ms": 5.23,
        "huge": 10**30,
        "odd": float("inf"),
        "none": None,
        "nested": [1, (2, 3), {"yes": True}],
        "described": Described(),
        "raw": b"bytes",
    }
    expected = json.dumps(
        event, default=lambda v: v.__structlog__() if hasattr(v, "__structlog__") else repr(v)
    )
    assert JsonLine()(None, "info", event) == expected
