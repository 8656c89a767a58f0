"""Outbound proxies: the route key `proxy`, and `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.

Each route's upstream is reached through at most one forward proxy, decided here, once, at load
(the runtime never reads the environment):
- `proxy: http://[user:pass@]host:port` on the route: that proxy, whatever the environment says;
- `proxy: none`: directly, whatever the environment says;
- no `proxy`: the environment, as curl reads it. `https_proxy` or `HTTPS_PROXY` for an https
  upstream, `http_proxy` or `HTTP_PROXY` for an http one (the lower-case name wins when both are
  set; an empty value is unset), unless `no_proxy` or `NO_PROXY` names the upstream
  (config/no_proxy.py). An upstream on 127.0.0.1 goes through the proxy too unless `NO_PROXY`
  names it: the same rule for every host, so a test setup behaves as a deployment would.

Logins, refreshes and WebSocket upgrades go where the route's requests go. A variable's value may
omit `http://`, as other programs allow. Credentials in a proxy URL are `Secret`s (masked wherever
they could turn up) and must be ASCII: Basic authentication has no agreed charset (RFC 7617
§2.1). A variable that cannot be read is a problem only when a route would use it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

from yarl import URL

from authproxy.auth.endpoints import elsewhere
from authproxy.config.interpolate import register_beyond_origin
from authproxy.config.no_proxy import Bypass, bypassed, parse_no_proxy
from authproxy.config.node import Node
from authproxy.errors import ConfigProblem
from authproxy.secrets import REGISTRY, Secret
from authproxy.settings import OutboundProxy, Route

NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
PROXY_VARIABLES = {"https": ("https_proxy", "HTTPS_PROXY"), "http": ("http_proxy", "HTTP_PROXY")}
DIRECT = "none"
EXPECTED = "expected http://[user:pass@]host:port, or none"


class ProxyEnvironment:
    """The proxy variables of one environment, each read once, on first use."""

    def __init__(self, environ: Mapping[str, str], problems: list[ConfigProblem]) -> None:
        self._environ = environ
        self._problems = problems
        self._no_proxy: tuple[Bypass, ...] = parse_no_proxy(_first(environ, NO_PROXY_VARIABLES)[1])
        self._proxies: dict[str, OutboundProxy | None] = {}

    def proxy_for(self, url: URL) -> OutboundProxy | None:
        """The proxy the environment names for `url`, or None: directly."""
        if url.scheme not in PROXY_VARIABLES or url.raw_host is None or url.port is None:
            return None
        if bypassed(self._no_proxy, url.raw_host, url.port):
            return None
        if url.scheme not in self._proxies:
            self._proxies[url.scheme] = self._read(url.scheme)
        return self._proxies[url.scheme]

    def _read(self, scheme: str) -> OutboundProxy | None:
        name, text = _first(self._environ, PROXY_VARIABLES[scheme])
        if not text:
            return None
        if "://" not in text:
            text = "http://" + text
        proxy = parse_proxy_url(text, f"env:{name}")
        if isinstance(proxy, str):
            message = f"environment variable {name}: {proxy} (or set `proxy:` on the route)"
            self._problems.append(ConfigProblem("", message))
            return None
        return proxy


def apply_proxies(routes: tuple[Route, ...], routes_node: Node) -> tuple[Route, ...]:
    """`routes`, each with the proxy its upstream is reached through (`Route.proxy`), and the
    proxy of every other origin it logs in at (`Route.login_proxies`)."""
    environment = ProxyEnvironment(routes_node.ctx.environ, routes_node.ctx.problems)
    placed = []
    for route in routes:
        node = routes_node.child(route.name).child("proxy")
        proxy = route_proxy(node, route, environment)
        others = () if route.auth is None else elsewhere(route.auth, route.upstream)
        # The route's own `proxy` covers all its traffic; otherwise each origin is decided
        # from the environment, so NO_PROXY can tell an internal API from an outside provider.
        logins = {
            str(origin): proxy if not node.missing else environment.proxy_for(origin)
            for origin in others
        }
        placed.append(
            dataclasses.replace(route, proxy=proxy, login_proxies=MappingProxyType(logins))
        )
    return tuple(placed)


def route_proxy(node: Node, route: Route, environment: ProxyEnvironment) -> OutboundProxy | None:
    """One route's proxy: its own `proxy` key, else what the environment says for its upstream."""
    if node.missing:
        return environment.proxy_for(route.upstream)
    # Host and port are shown and dialled (not masked); what `${...}` put elsewhere is secret.
    read = node.text(secret=False)
    if read is None:
        return None
    register_beyond_origin(read, read.value)
    if read.value == DIRECT:
        return None
    proxy = parse_proxy_url(read.value, "route")
    if isinstance(proxy, str):
        node.problem(proxy)
        return None
    return proxy


def parse_proxy_url(text: str, source: str) -> OutboundProxy | str:
    """`http://[user:pass@]host[:port]` as an `OutboundProxy`, or what is wrong with it (a
    message that never holds the text, which may carry a password)."""
    try:
        url = URL(text)
        port = url.port
    except ValueError:
        return f"not a valid URL; {EXPECTED}"
    if url.scheme == "https":
        return "a proxy reached over TLS (https://) is not supported; use http://"
    if url.scheme != "http" or not url.raw_host or port is None:
        return EXPECTED
    if url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment:
        return "must not have a path, query or fragment; " + EXPECTED
    credentials = _credentials(url, source)
    if isinstance(credentials, str):
        return credentials
    username, password = credentials
    return OutboundProxy(url.raw_host.lower(), port, username, password, source)


def _credentials(url: URL, source: str) -> tuple[Secret | None, Secret | None] | str:
    user, password = url.user, url.password
    # The encoded forms are what the URL text holds: masked as well as the decoded ones.
    REGISTRY.add_all(raw for raw in (url.raw_user, url.raw_password) if raw)
    if user is None and password is None:
        return None, None
    if not (user or "").isascii() or not (password or "").isascii():
        return "the proxy's user name and password must be ASCII (Basic authentication)"
    if ":" in (user or ""):
        return "the proxy's user name must not hold ':' (RFC 7617 §2)"
    return Secret(user or "", source), Secret(password or "", source)


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, str]:
    """(name, value) of the first of `names` set to a non-blank value; ("", "") if none is."""
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return "", ""
