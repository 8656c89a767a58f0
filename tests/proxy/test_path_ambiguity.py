"""One path, one route: spellings that upstreams read alike cannot cross a route's permission.

A gateway client may use `/svc` but not `/svc/internal`, and both routes reach the same upstream
(`/base` and `/base/internal`). Escapes, `//`, `.` segments, case, `;params` and backslashes
that an upstream would resolve to `/base/internal` must not reach it through `/svc`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from fakes import FakeUpstream, get, raw_request, route
from yarl import URL

from authproxy.config.load import parse_settings
from authproxy.proxy.routes import AmbiguousPath, RouteTable
from authproxy.server.app import Proxy

ALICE = "alice-key-00112233445566778899"
KEY = f"X-Authproxy-Key: {ALICE}"

CROSSINGS = [
    "/svc/%69nternal/x",
    "/svc/%49NTERNAL/x",
    "/svc//internal/x",
    "/svc/./internal/x",
    "/svc/%2e/internal/x",
    "/svc/INTERNAL/x",
    "/svc/Internal",
    "/svc/internal;jsessionid=1/x",
    "/svc;a/internal/x",
    "/svc/;a/internal/x",
    "/svc\\internal/x",
    "/svc%2finternal/x",
    "/svc/%5Cinternal/x",
    "/s%76c/internal/x",
]


@asynccontextmanager
async def gateway(upstream: URL) -> AsyncIterator[URL]:
    document = {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        "routes": {
            "svc": {"upstream": str(upstream / "base")},
            "internal": {"upstream": str(upstream / "base/internal"), "prefix": "/svc/internal"},
        },
        "clients": {"alice": {"key": ALICE, "routes": ["svc"]}},
    }
    proxy = Proxy(parse_settings(document, source="test", environ={}))
    await proxy.start()
    try:
        yield URL(proxy.urls[0])
    finally:
        await proxy.stop()


@pytest.mark.parametrize("target", CROSSINGS)
async def test_spellings_of_a_forbidden_route_are_refused_as_ambiguous(target: str) -> None:
    async with FakeUpstream() as upstream, gateway(upstream.url) as proxy:
        assert (await raw_request(proxy, get("/svc/internal/x", KEY))).status == 403
        response = await raw_request(proxy, get(target, KEY))
        assert response.status == 400, response.body
        assert response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(response.body)["type"] == "urn:authproxy:problem:ambiguous-path"
        assert upstream.requests == []


@pytest.mark.parametrize(
    ("target", "arrives"),
    [
        ("/svc//other", "/base//other"),
        ("/svc/./other/.", "/base/./other/."),
        ("/svc/%6Fther/%41", "/base/%6Fther/%41"),
        ("/svc/Other/INTERNAL", "/base/Other/INTERNAL"),
        ("/svc/other;v=1?q=/svc/internal", "/base/other;v=1?q=/svc/internal"),
        ("/svc/a%2Fb", "/base/a%2Fb"),
    ],
)
async def test_unambiguous_targets_still_pass_byte_for_byte(target: str, arrives: str) -> None:
    async with FakeUpstream() as upstream, gateway(upstream.url) as proxy:
        response = await raw_request(proxy, get(target, KEY))
        assert response.status == 200, response.body
        assert [seen.raw_path for seen in upstream.requests] == [arrives]


@pytest.mark.parametrize("target", [*CROSSINGS, "/SVC/x", "/svc/INTERNAL?q=1"])
def test_the_table_refuses_what_the_normalised_form_would_route_elsewhere(target: str) -> None:

    table = RouteTable(
        [route(URL("http://up.test"), "/svc"), route(URL("http://up.test"), "/svc/internal")]
    )
    with pytest.raises(AmbiguousPath):
        table.match(target)


def test_a_catch_all_route_does_not_make_every_upper_case_path_ambiguous() -> None:

    table = RouteTable([route(URL("http://up.test"), "/")])
    match = table.match("/Users/%41/./x//y")
    assert match is not None
    assert match.upstream_url.raw_path == "/Users/%41/./x//y"
