"""The `routes:` block -> `Route`s: each route's keys, upstream URL, prefix, timeouts, TLS and CORS.

A route's `auth:` block is read by `config/auth_block.py`, its `headers:` by
`config/headers_block.py`, its `proxy` by `config/outbound.py`. An upstream URL may carry a secret
in its path (a bot token), so what `${...}` put there is registered for masking, except what lies
in its origin (see `register_beyond_origin`).
"""

from __future__ import annotations

import os
import re

from yarl import URL

from authproxy.config.auth_block import auth_fields, parse_auth
from authproxy.config.headers_block import parse_header_rules
from authproxy.config.interpolate import expand_home, register_beyond_origin
from authproxy.config.node import Node
from authproxy.http_syntax import is_token
from authproxy.settings import CorsSettings, Route, Timeouts, TlsSettings

ROUTE_KEYS = (
    "upstream",
    "prefix",
    "timeout",
    "tls",
    "forwarded_headers",
    "auth",
    "cors",
    "headers",
    "proxy",
)
CORS_KEYS = ("origins", "methods", "headers", "max_age")
TIMEOUT_KEYS = ("connect", "read")
TLS_KEYS = ("verify", "ca_file")

_ROUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")


def parse_routes(node: Node) -> tuple[Route, ...]:
    """The `routes` mapping, in order; a second route with the same prefix is a problem."""
    if node.missing:
        node.problem("required: a mapping of route name to route (upstream, prefix, auth)")
        return ()
    entries = node.entries()
    if entries is None:
        return ()
    if not entries:
        node.problem("no routes; define at least one")
    routes: list[Route] = []
    owners: dict[str, str] = {}
    for name, child in entries:
        route = _route(name, child)
        if route is None:
            continue
        if (owner := owners.setdefault(route.prefix, name)) != name:
            child.child("prefix").problem(f"{route.prefix} is already the prefix of '{owner}'")
        routes.append(route)
    return tuple(routes)


# ---- one route -------------------------------------------------------------------------------


def _route(name: str, node: Node) -> Route | None:
    if not _ROUTE_NAME.fullmatch(name):
        node.problem("a route name may only hold letters, digits, '-' and '_'")
    if not node.keys(ROUTE_KEYS, dict.fromkeys(auth_fields() - set(ROUTE_KEYS), "auth")):
        return None
    upstream = _upstream(node.child("upstream"))
    prefix = _prefix(node.child("prefix"), name)
    timeout = _timeouts(node.child("timeout"))
    tls = _tls(node.child("tls"))
    forwarded = node.child("forwarded_headers").boolean(True)
    auth_node = node.child("auth")
    auth = None if auth_node.missing else parse_auth(auth_node)
    cors_node = node.child("cors")
    cors = None if cors_node.missing else _cors(cors_node)
    headers = parse_header_rules(node.child("headers"))
    if upstream is None:
        return None
    return Route(name, upstream, prefix, timeout, tls, forwarded, auth, cors, headers=headers)


def _upstream(node: Node) -> URL | None:
    if node.missing:
        node.problem("required")
        return None
    read = node.text(secret=False)
    if read is None:
        return None
    text = read.value
    register_beyond_origin(read, text)
    try:
        url = URL(text)
        url.port  # noqa: B018 - yarl checks the port only when it is read
    except ValueError:
        node.problem("not a valid URL")
        return None
    if url.scheme not in ("http", "https") or not url.host:
        node.problem("not an http(s) URL with a host, e.g. https://api.example.com")
    elif "?" in text or "#" in text:
        node.problem("must not have a query or fragment; only a base path is kept")
    elif url.user is not None or url.password is not None:
        node.problem("must not hold a user or password; put credentials under auth")
    else:
        return url.with_path(url.raw_path.rstrip("/"), encoded=True)
    return None


def _prefix(node: Node, name: str) -> str:
    text = node.string(f"/{name}", secret=False)
    prefix = text.rstrip("/") or "/"
    if node.missing and not _ROUTE_NAME.fullmatch(name):
        pass  # the bad name is reported once, as itself, not again as the prefix made from it
    elif not text.startswith("/"):
        node.problem("must start with '/'")
    elif any(char in text for char in "?#") or any(char.isspace() for char in text):
        node.problem("must be a plain path, without '?', '#' or spaces")
    elif "//" in prefix:
        node.problem("must not hold an empty segment ('//')")
    elif prefix == "/-" or prefix.startswith("/-/"):
        node.problem("'/-' and paths under it are the proxy's own endpoints")
    return prefix


def _timeouts(node: Node) -> Timeouts:
    if node.missing or not node.keys(TIMEOUT_KEYS):
        return Timeouts()
    default = Timeouts()
    return Timeouts(
        connect=node.child("connect").number(default.connect),
        read=node.child("read").number(default.read),
    )


def _cors(node: Node) -> CorsSettings | None:
    """`cors`: the browser origins that may call this route, and what they may send."""
    if not node.keys(CORS_KEYS):
        return None
    origins = tuple(
        origin for item in _list(node.child("origins"), required=True) if (origin := _origin(item))
    )
    default = CorsSettings(())
    methods = _tokens(node.child("methods"), "an HTTP method", upper=True) or default.methods
    headers = _tokens(node.child("headers"), "a header name", upper=False)
    max_age = node.child("max_age").integer(default.max_age, minimum=0)
    if not origins:
        return None
    return CorsSettings(origins, methods, headers, max_age)


def _list(node: Node, *, required: bool = False) -> list[Node]:
    if node.missing:
        if required:
            node.problem("required: a list")
        return []
    items = node.items() or []
    if required and node.value == []:
        node.problem("empty; list at least one")
    return items


def _origin(node: Node) -> str | None:
    """An exact browser origin: `scheme://host[:port]`, nothing after it."""
    text = node.string(required=True, secret=False)
    if text is None:
        return None
    if text == "*":
        node.problem("'*' would let every web page act with the upstream credentials; list origins")
        return None
    try:
        url = URL(text)
        url.port  # noqa: B018 - yarl checks the port only when it is read
    except ValueError:
        url = None
    if (
        url is None
        or url.scheme not in ("http", "https")
        or not url.host
        or url.raw_path not in ("", "/")
        or url.query_string
        or url.fragment
        or url.user is not None
    ):
        node.problem("expected an origin: scheme://host[:port], e.g. http://localhost:3000")
        return None
    return str(url.origin()).lower()


def _tokens(node: Node, noun: str, *, upper: bool) -> tuple[str, ...]:
    found: list[str] = []
    for item in _list(node):
        text = item.string(required=True, secret=False)
        if text is None:
            continue
        if not is_token(text):
            item.problem(f"not {noun}")
            continue
        found.append(text.upper() if upper else text.lower())
    return tuple(dict.fromkeys(found))


def _tls(node: Node) -> TlsSettings:
    if node.missing or not node.keys(TLS_KEYS):
        return TlsSettings()
    ca_node = node.child("ca_file")
    ca_file = None if ca_node.missing else ca_node.string(required=True, secret=False)
    if ca_file is not None:
        ca_file = expand_home(ca_file, node.ctx.environ)
        if not (os.path.isfile(ca_file) and os.access(ca_file, os.R_OK)):
            ca_node.problem(f"{ca_file} is not a readable file")
    return TlsSettings(verify=node.child("verify").boolean(True), ca_file=ca_file)
