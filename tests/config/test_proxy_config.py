"""config/: which outbound proxy each route's upstream is reached through, decided once at load.

The route's `proxy` key, else `HTTPS_PROXY` / `HTTP_PROXY` (lower-case first) unless `NO_PROXY`
names the upstream. Problems name the key or the variable, never the value (it may hold a password).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from authproxy.config.describe import describe_settings
from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError
from authproxy.settings import OutboundProxy, Settings

PASSWORD = "pr0xy-Passw0rd-81c2"


def parse(routes: Mapping[str, object], environ: Mapping[str, str] | None = None) -> Settings:
    document = {"token_store": "memory", "routes": dict(routes)}
    return parse_settings(document, source="test.yaml", environ=dict(environ or {}))


def proxy_of(upstream: str, environ: Mapping[str, str], **route: object) -> OutboundProxy | None:
    return parse({"api": {"upstream": upstream, **route}}, environ).routes[0].proxy


def problems(routes: Mapping[str, object], environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(routes, environ)
    return [str(problem) for problem in info.value.problems]


def test_the_upstreams_scheme_picks_the_variable() -> None:
    environ = {"HTTP_PROXY": "http://plain.corp:3128", "HTTPS_PROXY": "http://tls.corp:3129"}
    settings = parse(
        {"a": {"upstream": "http://api.example.com"}, "b": {"upstream": "https://api.example.com"}},
        environ,
    )
    assert [route.proxy for route in settings.routes] == [
        OutboundProxy("plain.corp", 3128, source="env:HTTP_PROXY"),
        OutboundProxy("tls.corp", 3129, source="env:HTTPS_PROXY"),
    ]
    assert str(settings.routes[0].proxy) == "plain.corp:3128"
    assert proxy_of("https://api.example.com", {}) is None  # no variable: directly


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        # The lower-case name wins, as curl and Python read them.
        ({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}, ("low", 1)),
        ({"https_proxy": " ", "HTTPS_PROXY": "http://up:2"}, ("up", 2)),  # blank is unset
        ({"HTTPS_PROXY": "proxy.corp:8080"}, ("proxy.corp", 8080)),  # no scheme: http
        ({"HTTPS_PROXY": "http://Proxy.Corp"}, ("proxy.corp", 80)),  # http's port
        ({"HTTPS_PROXY": "http://[::1]:3128/"}, ("::1", 3128)),
    ],
)
def test_how_a_variable_is_read(environ: Mapping[str, str], expected: tuple[str, int]) -> None:
    proxy = proxy_of("https://api.example.com", environ)
    assert proxy is not None
    assert (proxy.host, proxy.port) == expected


@pytest.mark.parametrize(
    ("no_proxy", "upstream", "bypassed"),
    [
        ("api.example.com", "https://api.example.com", True),
        ("example.com", "https://eu.api.example.com", True),  # and every name under it
        (".example.com", "https://example.com", True),
        ("*.example.com", "https://a.example.com", True),
        ("API.Example.COM.", "https://api.example.com", True),
        ("example.com", "https://badexample.com", False),
        ("api.example.com:8443", "https://api.example.com:8443", True),
        ("api.example.com:8443", "https://api.example.com", False),  # 443
        ("api.example.com:443", "https://api.example.com", True),
        ("*", "https://anything.example.org", True),
        ("other.org, , *.example.com", "https://x.example.com", True),
        ("10.0.0.0/8", "https://10.1.2.3", True),
        ("10.0.0.0/8", "https://11.1.2.3", False),
        ("::1", "https://[::1]:8443", True),
        ("[::1]:8443", "https://[::1]:8443", True),
        ("127.0.0.1", "https://127.0.0.1:9000", True),
        ("", "https://127.0.0.1:9000", False),  # loopback is not special
        ("localhost", "https://127.0.0.1", False),  # names are not resolved
        ("<local>", "https://intranet", False),  # another program's syntax matches nothing
    ],
)
def test_no_proxy_names_what_goes_around_the_proxy(
    no_proxy: str, upstream: str, bypassed: bool
) -> None:
    proxy = proxy_of(upstream, {"HTTPS_PROXY": "http://proxy.corp:3128", "no_proxy": no_proxy})
    assert (proxy is None) is bypassed


def test_a_routes_proxy_overrides_the_environment_and_none_goes_around_it() -> None:
    environ = {"HTTPS_PROXY": "http://env.corp:3128", "PROXY_PASSWORD": PASSWORD}
    own = "http://build-bot:${PROXY_PASSWORD}@own.corp:8080"
    settings = parse(
        {
            "own": {"upstream": "https://a.example.com", "proxy": own},
            "none": {"upstream": "https://a.example.com", "proxy": "none"},
        },
        environ,
    )
    proxy = settings.routes[0].proxy
    assert proxy is not None
    assert (proxy.host, proxy.port, proxy.source) == ("own.corp", 8080, "route")
    assert proxy.username is not None
    assert proxy.password is not None
    assert (proxy.username.reveal(), proxy.password.reveal()) == ("build-bot", PASSWORD)
    assert PASSWORD not in repr(proxy)
    assert settings.routes[1].proxy is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("https://proxy.corp:3128", "a proxy reached over TLS (https://) is not supported"),
        ("socks5://proxy.corp:1080", "expected http://[user:pass@]host:port, or none"),
        ("proxy.corp:3128", "expected http://[user:pass@]host:port, or none"),
        ("http://proxy.corp:3128/pac", "must not have a path, query or fragment"),
        ("http://proxy.corp:99999", "not a valid URL"),
        (f"http://us%3Aer:{PASSWORD}@proxy.corp:1", "user name must not hold ':'"),
        (f"http://j%C3%BCrgen:{PASSWORD}@proxy.corp:1", "must be ASCII"),
    ],
)
def test_a_bad_proxy_key_is_a_problem_that_never_shows_it(value: str, message: str) -> None:
    found = problems({"api": {"upstream": "https://a.example.com", "proxy": value}})
    assert len(found) == 1
    assert found[0].startswith("routes.api.proxy: ")
    assert message in found[0]
    assert PASSWORD not in found[0]


def test_a_bad_variable_is_a_problem_only_for_routes_that_would_use_it() -> None:
    environ = {"HTTPS_PROXY": f"https://user:{PASSWORD}@proxy.corp:3128"}
    plain = {"upstream": "http://a.example.com"}
    assert parse({"plain": plain}, environ).routes[0].proxy is None
    assert parse({"own": {"upstream": "https://a.example.com", "proxy": "none"}}, environ)
    both = {"a": {"upstream": "https://a.example.com"}, "b": {"upstream": "https://b.example.com"}}
    found = problems(both, environ)
    assert found == [
        "environment variable HTTPS_PROXY: a proxy reached over TLS (https://) is not supported;"
        " use http:// (or set `proxy:` on the route)"
    ]


def test_check_expand_shows_the_proxy_and_masks_its_credentials() -> None:
    environ = {"HTTPS_PROXY": f"http://build-bot:{PASSWORD}@proxy.corp:3128"}
    settings = parse({"api": {"upstream": "https://a.example.com"}}, environ)
    described = describe_settings(settings)
    routes = described["routes"]
    assert isinstance(routes, dict)
    assert routes["api"]["proxy"] == {
        "address": "proxy.corp:3128",
        "from": "env:HTTPS_PROXY",
        "credentials": {
            "username": {"value": "<redacted>", "origin": "env:HTTPS_PROXY"},
            "password": {"value": "<redacted>", "origin": "env:HTTPS_PROXY"},
        },
    }
    assert PASSWORD not in json.dumps(described)
    assert "build-bot" not in json.dumps(described)


def test_a_token_url_on_another_host_gets_its_own_proxy_decision() -> None:
    """NO_PROXY can name an internal API while its identity provider sits outside, behind the
    corporate proxy; a route's own `proxy` covers all its traffic."""
    oauth = {
        "preset": "oauth2",
        "token_url": "https://idp.example.com/oauth/token",
        "client_id": "app",
        "client_secret": "s3cret-value-1",
    }
    environ = {"HTTPS_PROXY": "http://corp.example:3128", "NO_PROXY": "api.internal"}
    route = parse({"api": {"upstream": "https://api.internal", "auth": oauth}}, environ).routes[0]
    assert route.proxy is None
    login = route.login_proxies["https://idp.example.com"]
    assert login is not None
    assert (login.host, login.port) == ("corp.example", 3128)
    pinned = {"upstream": "https://api.internal", "auth": oauth, "proxy": "none"}
    route = parse({"api": pinned}, environ).routes[0]
    assert route.login_proxies == {"https://idp.example.com": None}
