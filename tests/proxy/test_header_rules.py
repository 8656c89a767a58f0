"""A route's `headers` rules: set and remove on the request and on the answer, through a real
proxy to a real fake upstream; the auth engine's headers win; `${...}` values stay secret."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web
from fakes import FakeUpstream, get, raw_request, running_proxy
from yarl import URL

from authproxy.config.describe import describe_settings
from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError
from authproxy.settings import Route, Settings

TEAM_SECRET = "team-secret-5f1e9a7c"


def settings(routes: dict[str, Any], environ: dict[str, str] | None = None) -> Settings:
    return parse_settings({"routes": routes}, source="test", environ=environ or {})


def routes_of(upstream: URL, **route: Any) -> tuple[Route, ...]:
    document = {"api": {"upstream": str(upstream), "prefix": "/api", **route}}
    return settings(document, {"TEAM_SECRET": TEAM_SECRET}).routes


async def answer_with_server_headers(request: web.BaseRequest) -> web.StreamResponse:
    seen = {name.lower(): value for name, value in request.headers.items()}
    return web.json_response(
        seen, headers={"Server": "upstream/1.0", "X-Upstream": "kept", "X-Debug": "internal"}
    )


@asynccontextmanager
async def proxied(**route: Any) -> AsyncIterator[URL]:
    """A proxy with one route `/api` (its keys `route`) in front of a fake upstream."""
    async with (
        FakeUpstream(answer_with_server_headers) as upstream,
        running_proxy(*routes_of(upstream.url, **route)) as proxy,
    ):
        yield proxy


async def test_a_route_without_auth_sets_and_removes_headers_both_ways() -> None:
    rules = {
        "request": {
            "set": {"X-Team": "platform", "X-Api-Key": "${TEAM_SECRET}", "User-Agent": "gw"},
            "remove": ["Cookie", "X-Forwarded-For"],
        },
        "response": {"set": {"Cache-Control": "no-store", "Server": "gw"}, "remove": ["x-debug"]},
    }
    async with proxied(headers=rules) as proxy:
        answer = await raw_request(
            proxy, get("/api/x", "Cookie: session=1", "User-Agent: curl/8", "X-Client: kept")
        )
    assert answer.status == 200
    seen = json.loads(answer.body)
    assert seen["x-team"] == "platform"
    assert seen["x-api-key"] == TEAM_SECRET
    assert seen["user-agent"] == "gw"
    assert seen["x-client"] == "kept"
    assert "cookie" not in seen
    assert "x-forwarded-for" not in seen  # the proxy's own hop is removed too
    assert seen["x-forwarded-proto"] == "http"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers.getall("Server") == ["gw"]
    assert "X-Debug" not in answer.headers
    assert answer.headers["X-Upstream"] == "kept"
    assert "X-Request-Id" in answer.headers


async def test_the_injected_auth_headers_win_over_request_set() -> None:
    auth = {"credentials": {"key": "static-key-7"}, "inject": {"headers": {"X-Key": "{key}"}}}
    rules = {"request": {"set": {"X-Key": "from-the-rule", "X-Extra": "yes"}}}
    async with proxied(auth=auth, headers=rules) as proxy:
        answer = await raw_request(proxy, get("/api/x", "X-Key: from-the-client"))
    seen = json.loads(answer.body)
    assert seen["x-key"] == "static-key-7"
    assert seen["x-extra"] == "yes"


def test_values_from_references_are_masked_where_the_config_is_shown() -> None:
    rules = {"request": {"set": {"X-Api-Key": "${TEAM_SECRET}", "X-Team": "platform"}}}
    document = {"api": {"upstream": "http://127.0.0.1:9", "headers": rules}}
    shown = describe_settings(settings(document, {"TEAM_SECRET": TEAM_SECRET}))
    assert TEAM_SECRET not in json.dumps(shown)
    headers = shown["routes"]["api"]["headers"]  # type: ignore[index]
    assert headers["request"]["set"] == {"X-Api-Key": "<redacted>", "X-Team": "platform"}
    assert headers["response"] == {"set": {}, "remove": []}


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            {"request": {"set": {"Content-Length": "1"}}},
            "routes.api.headers.request.set.Content-Length: Content-Length cannot be changed by "
            "a header rule: the proxy sets it itself",
        ),
        (
            {"request": {"remove": ["Transfer-Encoding"]}},
            "routes.api.headers.request.remove[0]: Transfer-Encoding cannot be changed",
        ),
        (
            {"request": {"set": {"Host": "elsewhere"}}},
            "routes.api.headers.request.set.Host: Host cannot be changed",
        ),
        (
            {"response": {"set": {"Access-Control-Allow-Origin": "*"}}},
            "Access-Control-Allow-Origin cannot be changed by a header rule: CORS answers come "
            "from the route's cors",
        ),
        (
            {"response": {"set": {"X-Request-Id": "1"}}},
            "routes.api.headers.response.set.X-Request-Id: X-Request-Id cannot be changed",
        ),
        (
            {"request": {"set": {"Bad Name": "x"}}},
            "routes.api.headers.request.set.Bad Name: 'Bad Name' is not a header name",
        ),
        (
            {"request": {"set": {"X-A": "one\r\nX-B: two"}}},
            "routes.api.headers.request.set.X-A: a header value must not hold control characters",
        ),
        (
            {"request": {"set": {"X-A": "1"}, "remove": ["x-a"]}},
            "routes.api.headers.request.set.X-A: also listed under remove",
        ),
        (
            {"response": {"remove": ["Server"]}},
            "routes.api.headers.response.remove[0]: the proxy always sends a Server header; set "
            "one to replace it instead",
        ),
        ({"request": {"sett": {}}}, "routes.api.headers.request.sett: unknown key; did you mean"),
        ({"requests": {}}, "routes.api.headers.requests: unknown key; did you mean 'request'?"),
        ({"request": {"set": {"X-A": 1}}}, "expected a string, got a number (quote it)"),
    ],
)
def test_rules_the_proxy_cannot_honour_are_config_errors(
    rules: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        routes_of(URL("http://127.0.0.1:9"), headers=rules)
    assert message in str(caught.value)


def test_a_control_character_from_the_environment_is_named_without_the_value() -> None:
    rules = {"request": {"set": {"X-A": "${BAD}"}}}
    document = {"api": {"upstream": "http://127.0.0.1:9", "headers": rules}}
    with pytest.raises(ConfigError) as caught:
        settings(document, {"BAD": "evil-value\nX-Injected: 1"})
    assert "must not hold control characters (CR, LF, NUL) (env:BAD)" in str(caught.value)
    assert "evil-value" not in str(caught.value)
