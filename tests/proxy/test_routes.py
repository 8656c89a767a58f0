"""Routing through a real proxy: prefixes, raw targets byte for byte, `..`, the proxy's own paths.

Targets are sent over a raw socket: aiohttp's client normalizes `..` and re-quotes some escapes,
which would hide exactly what these tests are about.
"""

from __future__ import annotations

import json

import pytest
from fakes import FakeUpstream, get, raw_request, route, running_proxy
from yarl import URL

from authproxy.proxy.routes import RouteTable, UnsafePath

UPSTREAM = URL("http://upstream.test")


# ---- the pure table -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/api", ("api", "")),
        ("/api/", ("api", "/")),
        ("/api/x", ("api", "/x")),
        ("/api?q", ("api", "?q")),
        ("/api/v2", ("v2", "")),
        ("/api/v2/x?y", ("v2", "/x?y")),
        ("/api/v2x", ("api", "/v2x")),
        ("/apix", None),
        ("/ap", None),
        ("/", None),
    ],
)
def test_prefix_matches_on_segment_boundaries_longest_first(
    target: str, expected: tuple[str, str] | None
) -> None:
    table = RouteTable([route(UPSTREAM, "/api"), route(UPSTREAM, "/api/v2", name="v2")])
    found = table.find(target)
    assert (None if found is None else (found[0].name, found[1])) == expected


@pytest.mark.parametrize(
    ("target", "upstream"),
    [
        ("/api", "http://upstream.test/base"),
        ("/api/", "http://upstream.test/base/"),
        ("/api/x/y?q=1", "http://upstream.test/base/x/y?q=1"),
        ("/api?q=1", "http://upstream.test/base?q=1"),
    ],
)
def test_upstream_url_keeps_the_base_path(target: str, upstream: str) -> None:
    table = RouteTable([route(UPSTREAM, "/api", base="/base/")])
    match = table.match(target)
    assert match is not None
    assert str(match.upstream_url) == upstream


@pytest.mark.parametrize(
    "target",
    [
        "/api/../x",
        "/api/%2e%2e/x",
        "/api/..%2fx",
        "/api/%252e%252e/x",
        "/api/x/..",
        "/api/..;x/y",
        "/api/%2e%2e;/y",
        "/api/..%00",
        "/api/%c0%ae%c0%ae/x",
        "/api/%e0%80%ae./x",
        "/api/%f0%80%80%ae%f0%80%80%ae",
        "/api/..%c0%afx",
        "/api/..%e0%80%afx",
        "/api/..%c1%9cx",
    ],
)
def test_table_rejects_dot_dot(target: str) -> None:
    with pytest.raises(UnsafePath):
        RouteTable([route(UPSTREAM)]).match(target)


# ---- through the proxy --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "arrives"),
    [
        ("/api", "/base"),
        ("/api/", "/base/"),
        ("/api?q", "/base?q"),
        ("/api/a%2Fb", "/base/a%2Fb"),
        ("/api/a%2fb/c%20d", "/base/a%2fb/c%20d"),
        ("/api/a+b?x=1+2&y=%2B", "/base/a+b?x=1+2&y=%2B"),
        ("/api/caf%C3%A9?n=%E2%9C%93", "/base/caf%C3%A9?n=%E2%9C%93"),
        ("/api/%7e%7E/%41", "/base/%7e%7E/%41"),
        ("/api/odd%zz%/x", "/base/odd%zz%/x"),
        ("/api/;p=1/x;y?a=b;c&&d==e", "/base/;p=1/x;y?a=b;c&&d==e"),
        ("/api/x?next=/a/../b", "/base/x?next=/a/../b"),
        ("/api//double//slash", "/base//double//slash"),
        ("/api/a..b/...;v=1/..x/%C3%A9%c3%80", "/base/a..b/...;v=1/..x/%C3%A9%c3%80"),
    ],
)
async def test_path_and_query_reach_the_upstream_byte_for_byte(target: str, arrives: str) -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url, base="/base")) as proxy,
    ):
        response = await raw_request(proxy, get(target))
        assert response.status == 200, response.body
        assert [seen.raw_path for seen in upstream.requests] == [arrives]
        assert json.loads(response.body)["path"] == arrives


async def test_longest_prefix_wins_and_is_stripped() -> None:
    async with (
        FakeUpstream() as short,
        FakeUpstream() as long,
        running_proxy(route(short.url, "/api"), route(long.url, "/api/v2", name="v2")) as proxy,
    ):
        for target in ("/api/v2/users", "/api/v2x", "/api/v1"):
            assert (await raw_request(proxy, get(target))).status == 200
        assert [seen.raw_path for seen in long.requests] == ["/users"]
        assert [seen.raw_path for seen in short.requests] == ["/v2x", "/v1"]


@pytest.mark.parametrize(
    "target",
    [
        "/api/..",
        "/api/../x",
        "/api/x/../../y",
        "/api/%2e%2e/x",
        "/api/%2E%2E/x",
        "/api/.%2e/x",
        "/api/..%2fx",
        "/api/..%2Fx",
        "/api/x%2f..%2f..%2fy",
        "/api/%252e%252e/x",
        "/api/%25252e%25252e/x",
        "/api/..%5cx",
        "/api/../x?q=1",
        # Dot-dot with path parameters or a NUL: servlet containers and C code read `..`.
        "/api/..;/x",
        "/api/..;jsessionid=1/x",
        "/api/%2e%2e;/x",
        "/api/.%2E;x=1/y",
        "/api/%252e%252e;/x",
        "/api/..%00/x",
        "/api/..%2500/x",
        "/api/x\\..;\\y",
        # Overlong UTF-8 forms of '.', '/' and '\\', also double-encoded.
        "/api/%c0%ae%c0%ae/x",
        "/api/%C0%AE./x",
        "/api/%e0%80%ae%e0%80%ae/x",
        "/api/%f0%80%80%ae%f0%80%80%ae/x",
        "/api/..%c0%afx",
        "/api/..%e0%80%afx",
        "/api/..%c1%9cx",
        "/api/%25c0%25ae%25c0%25ae/x",
        "/api/%c0%ae/x",
    ],
)
async def test_dot_dot_segments_are_rejected_before_the_upstream(target: str) -> None:
    async with (
        FakeUpstream() as upstream,
        running_proxy(route(upstream.url, base="/base")) as proxy,
    ):
        response = await raw_request(proxy, get(target))
        assert response.status == 400
        assert response.headers["Content-Type"] == "application/problem+json"
        assert upstream.requests == []


async def test_unknown_route_is_a_404_problem_and_nothing_is_forwarded() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url)) as proxy:
        for target in ("/apix", "/other", "/"):
            response = await raw_request(proxy, get(target))
            assert response.status == 404
            assert response.headers["Content-Type"] == "application/problem+json"
            problem = json.loads(response.body)
            assert problem["status"] == 404
            assert {"type", "title", "detail"} <= problem.keys()
        assert upstream.requests == []


async def test_absolute_form_target_is_refused_without_contacting_it() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url, "/")) as proxy:
        for target in (str(upstream.url / "x"), "http://evil.example/"):
            response = await raw_request(proxy, get(target))
            assert response.status == 400
            assert response.headers["Content-Type"] == "application/problem+json"
        assert upstream.requests == []
        assert upstream.connections == 0


async def test_connect_is_refused_without_contacting_anything() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url, "/")) as proxy:
        authority = f"{upstream.url.host}:{upstream.url.port}"
        request = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
        response = await raw_request(proxy, request)
        assert response.status == 405
        assert "CONNECT" not in response.headers["Allow"]
        assert upstream.requests == []
        assert upstream.connections == 0


async def test_health_answers_and_other_own_paths_are_never_forwarded() -> None:
    async with FakeUpstream() as upstream, running_proxy(route(upstream.url, "/")) as proxy:
        health = await raw_request(proxy, get("/-/health"))
        assert health.status == 200
        assert json.loads(health.body) == {"status": "ok"}
        for target in ("/-/anything-else", "/-/health/x", "/-", "/-/"):
            response = await raw_request(proxy, get(target))
            assert response.status == 404, target
            assert response.headers["Content-Type"] == "application/problem+json"
        assert upstream.requests == []
        # The catch-all route still gets everything else, including look-alikes.
        assert (await raw_request(proxy, get("/-x/y"))).status == 200
        assert [seen.raw_path for seen in upstream.requests] == ["/-x/y"]
