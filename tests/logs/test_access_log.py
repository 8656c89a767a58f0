"""The access line's fields (remote address, user agent, client, referer) and `log_format: clf`,
read back from the real logging pipeline after real requests; redaction covers every field."""

from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fakes import FakeUpstream, raw_request
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError
from authproxy.server.app import Proxy

CLIENT_KEY = "alice-key-4c8d2e0f9a7b6c5d"
UPSTREAM_KEY = "upstream-key-93be71d0c4"
QUERY_VALUE = "query-value-77aa55"
# Apache's combined format, as log tools parse it.
COMBINED = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>[^\]]+)\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<size>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"$'
)


@asynccontextmanager
async def gateway(upstream: URL, **extra: Any) -> AsyncIterator[URL]:
    document = {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        "clients": {"alice": {"key": CLIENT_KEY}},
        "routes": {
            "api": {
                "upstream": str(upstream),
                "auth": {
                    "credentials": {"key": UPSTREAM_KEY},
                    "inject": {"headers": {"X-Key": "{key}"}},
                },
            }
        },
        **extra,
    }
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        yield URL(proxy.urls[0])
    finally:
        await proxy.stop()


def request(target: str, *headers: str) -> bytes:
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: gateway.test",
        f"X-Authproxy-Key: {CLIENT_KEY}",
        *headers,
        "Connection: close",
        "",
        "",
    ]
    return "\r\n".join(lines).encode("latin-1")


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line.strip()]


async def test_the_access_event_names_the_peer_the_agent_and_the_client(
    log_stream: io.StringIO,
) -> None:
    async with FakeUpstream() as upstream, gateway(upstream.url) as proxy:
        answer = await raw_request(
            proxy,
            request(
                f"/api/x?q={QUERY_VALUE}",
                f"User-Agent: tool/1.0 (key {UPSTREAM_KEY})",
                f"Referer: http://app.test/page?token={QUERY_VALUE}",
            ),
        )
    assert answer.status == 200
    (event,) = [json.loads(line) for line in lines(log_stream) if '"request"' in line]
    assert event["remote"] == "127.0.0.1"
    assert event["client"] == "alice"
    assert event["protocol"] == "HTTP/1.1"
    assert event["user_agent"] == "tool/1.0 (key <redacted>)"
    assert event["referer"] == "http://app.test/page?token=<redacted>"
    assert event["path"] == "/api/x?q=<redacted>"
    text = log_stream.getvalue()
    for secret in (CLIENT_KEY, UPSTREAM_KEY, QUERY_VALUE):
        assert secret not in text


async def test_log_format_clf_writes_combined_lines_with_every_field_redacted(
    log_stream: io.StringIO,
) -> None:
    async with FakeUpstream() as upstream, gateway(upstream.url, log_format="clf") as proxy:
        first = await raw_request(
            proxy,
            request(
                f"/api/items?q={QUERY_VALUE}&page=2",
                f'User-Agent: evil "agent"\\ {UPSTREAM_KEY}',
                f"Referer: http://app.test/?k={QUERY_VALUE}",
            ),
        )
        await raw_request(proxy, request("/nowhere"))
    assert first.status == 200
    access = [line for line in lines(log_stream) if not line.startswith("{")]
    assert len(access) == 2, log_stream.getvalue()
    found = COMBINED.match(access[0])
    assert found is not None, access[0]
    assert found["host"] == "127.0.0.1"
    assert found["ident"] == "-"
    assert found["user"] == "alice"
    assert re.fullmatch(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000", found["time"])
    assert found["request"] == "GET /api/items?q=<redacted>&page=<redacted> HTTP/1.1"
    assert found["status"] == "200"
    assert int(found["size"]) == len(first.body)
    assert found["referer"] == "http://app.test/?k=<redacted>"
    assert found["agent"] == 'evil \\"agent\\"\\\\ <redacted>'
    missing = COMBINED.match(access[1])
    assert missing is not None
    assert (missing["status"], missing["referer"], missing["agent"]) == ("404", "-", "-")
    for secret in (CLIENT_KEY, UPSTREAM_KEY, QUERY_VALUE):
        assert secret not in log_stream.getvalue()


def test_log_format_is_events_or_clf() -> None:
    document = {"routes": {"a": {"upstream": "http://127.0.0.1:9"}}, "log_format": "apache"}
    with pytest.raises(ConfigError) as caught:
        parse_settings(document, source="test", environ={})
    assert "log_format: unknown log format 'apache'; expected one of: events, clf" in str(
        caught.value
    )
