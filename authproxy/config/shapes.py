"""What each config key holds: its JSON Schema, its unit, a line of description.

The loader's key tuples (`TOP_KEYS`, `ROUTE_KEYS`, a preset's fields, ...) say which keys a block
may hold; these tables say what each holds, by the same names. `config/schema.py` builds the
schema from both, and the units word the loader's message for `5s` or `80%` (`config/node.py`).
Any scalar may be a `${...}` reference: the schema accepts one for a number or a boolean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, get_args

from authproxy.settings import ExpirySource

Schema = dict[str, Any]

FRACTION = "a fraction of the token's lifetime"
# A string holding a `${...}` reference: it may stand for a number or a boolean.
REFERENCE: Schema = {"type": "string", "pattern": r"\$\{"}


@dataclass(frozen=True, slots=True)
class Shape:
    """One key's value: a JSON Schema, or `block`, the name of a table below (a nested block)."""

    description: str
    schema: Schema = field(default_factory=dict)
    unit: str | None = None
    block: str | None = None


def _number(description: str, unit: str, *, minimum: float = 0, exclusive: bool = True) -> Shape:
    bound = "exclusiveMinimum" if exclusive else "minimum"
    schema = {"anyOf": [{"type": "number", bound: minimum}, REFERENCE]}
    return Shape(f"{description} ({unit})", schema, unit)


def _integer(description: str, unit: str, *, minimum: int, maximum: int | None = None) -> Shape:
    number: Schema = {"type": "integer", "minimum": minimum}
    if maximum is not None:
        number["maximum"] = maximum
    return Shape(f"{description} ({unit})", {"anyOf": [number, REFERENCE]}, unit)


def _seconds(description: str, *, zero: bool = False) -> Shape:
    return _number(description, "seconds", exclusive=not zero)


def _flag(description: str) -> Shape:
    return Shape(description, {"anyOf": [{"type": "boolean"}, REFERENCE]})


def _text(description: str, **schema: Any) -> Shape:
    return Shape(description, {"type": "string", **schema})


def _texts(description: str, *, min_items: int = 0) -> Shape:
    schema: Schema = {"type": "array", "items": {"type": "string"}}
    if min_items:
        schema["minItems"] = min_items
    return Shape(description, schema)


def _text_map(description: str) -> Shape:
    return Shape(description, {"type": "object", "additionalProperties": {"type": "string"}})


# One key, or alternatives tried in order (`token.key`).
_KEYS: Schema = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
}

TOP: Mapping[str, Shape] = {
    "listen": Shape(
        "HOST:PORT to accept requests on; a port alone means 127.0.0.1:PORT; port 0 picks one",
        {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 65535}]},
    ),
    "token_store": _text("'memory', a file path, or redis://host:6379/0 (rediss:// with TLS)"),
    "token_store_key": _text("a Fernet key that encrypts stored tokens (authproxy keygen)"),
    "shutdown_grace": _seconds("time in-flight requests get to finish on shutdown"),
    "limits": Shape("what a client may make the proxy wait for or hold", block="limits"),
    "upstream": Shape("the connections to upstreams", block="upstream"),
    "routes": Shape("route name -> route; requests to /<prefix>/... go upstream", block="routes"),
    "clients": Shape("client name -> client: who may call a team gateway", block="clients"),
    "allow_unauthenticated": _flag("allow a non-loopback listen address without clients"),
    "allow_plaintext_store": _flag("accept a Redis store without token_store_key with clients"),
    "allowed_hosts": _texts("extra Host names the proxy answers to without clients"),
}

LIMITS: Mapping[str, Shape] = {
    "header_timeout": _seconds("time a client may take to send its request headers"),
    "keepalive_timeout": _seconds("time an idle keep-alive connection stays open"),
    "max_header_size": _integer("size of the request line and of each header", "bytes", minimum=1),
    "body_timeout": _seconds("time a client may pause between pieces of its request body"),
    "max_connections": _integer("client connections open at once", "connections", minimum=1),
    "replay_buffer_total": _integer(
        "request bodies held at once for a replay after a 401; 0: never", "bytes", minimum=0
    ),
    "websocket_message": _integer("size of one WebSocket message", "bytes", minimum=1),
}

UPSTREAM: Mapping[str, Shape] = {
    "busy_poll_us": _integer(
        "polling after an exchange instead of sleeping", "microseconds", minimum=0, maximum=10_000
    ),
}

ROUTE: Mapping[str, Shape] = {
    "upstream": _text("http(s) base URL; a base path is kept (no query or fragment)"),
    "prefix": _text("path the route answers under (default /<route name>)", pattern="^/"),
    "timeout": Shape("timeouts towards the upstream", block="timeout"),
    "tls": Shape("how the upstream's certificate is checked", block="tls"),
    "forwarded_headers": _flag("add X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host"),
    "auth": Shape("how to log in; without it the route forwards without auth", block="auth"),
    "cors": Shape("browser origins that may call this route", block="cors"),
}

TIMEOUT: Mapping[str, Shape] = {
    "connect": _seconds("time to open a connection upstream"),
    "read": _seconds("time to wait for each piece of the answer"),
}

TLS: Mapping[str, Shape] = {
    "verify": _flag("check the upstream's certificate"),
    "ca_file": _text("an extra CA bundle to trust"),
}

CORS: Mapping[str, Shape] = {
    "origins": _texts("exact origins, scheme://host[:port]", min_items=1),
    "methods": _texts("HTTP methods a page may use"),
    "headers": _texts("request headers a page may send"),
    "max_age": _integer("time a browser may cache the preflight answer", "seconds", minimum=0),
}

# The options every auth block takes, preset or custom.
AUTH_COMMON: Mapping[str, Shape] = {
    "ttl": _seconds("how long a token lives, when the upstream does not say"),
    "warm": _flag("log in at start instead of on the first request"),
    "renew_at": Shape(
        "renew after this fraction of the token's lifetime (0.8 for 80%)",
        {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, REFERENCE]},
        FRACTION,
    ),
    "relogin_after_rejection": _seconds("wait after a refused login", zero=True),
    "invalid_statuses": Shape(
        "upstream statuses that mean the token is no longer valid",
        {
            "type": "array",
            "minItems": 1,
            "items": {"anyOf": [{"type": "integer", "minimum": 400, "maximum": 599}, REFERENCE]},
        },
    ),
    "timeout": _seconds("time one login may take"),
}

CUSTOM: Mapping[str, Shape] = {
    "credentials": _text_map("name -> value; each is masked everywhere"),
    "login": Shape("the login request; leave out for static credentials", block="request"),
    "token": Shape("where the login answer holds the token", block="token"),
    "expiry": Shape("where the token's lifetime comes from", block="expiry"),
    "refresh": Shape("renew without the password", block="refresh"),
    "inject": Shape("the headers each request gets", block="inject"),
    "adopt": Shape("new tokens the upstream hands out on ordinary answers", block="adopt"),
    "strip_response_headers": _texts("response headers never passed back to the client"),
}

REQUEST: Mapping[str, Shape] = {
    "method": _text("HTTP method (default POST)"),
    "path": _text("absolute path on the upstream's origin", pattern="^/"),
    "format": _text("how the body is encoded", enum=["json", "form"]),
    "body": _text_map("field -> template"),
    "headers": _text_map("header -> template"),
}

REFRESH: Mapping[str, Shape] = {
    **REQUEST,
    "requires": _text("the captured value without which no refresh is tried"),
}

TOKEN: Mapping[str, Shape] = {
    "from": _text("where the token is", enum=["body", "header"]),
    "key": Shape("a key (dots walk nested), or alternatives tried in order", _KEYS),
    "refresh_key": Shape("where the refresh token is, captured as {refresh_token}", _KEYS),
    "extra": Shape(
        "more values to capture: name -> key",
        {"type": "object", "additionalProperties": _KEYS},
    ),
}

EXPIRY: Mapping[str, Shape] = {
    "from": _text("the source of the lifetime", enum=list(get_args(ExpirySource))),
    "key": _text("the field or header holding it"),
    "seconds": _seconds("the lifetime, with from: ttl"),
}

INJECT: Mapping[str, Shape] = {
    "headers": _text_map("header -> template, replacing the client's"),
    "defaults": _text_map("header -> template, set only when the client sent none"),
}

ADOPT: Mapping[str, Shape] = {
    "trigger": _text("a response carrying this header triggers it"),
    "headers": _text_map("value name -> response header"),
}

PRESET_SECRET = Shape("a credential of the preset; masked everywhere", {"type": "string"})
PRESET_OPTION = Shape("an option of the preset", {"type": ["string", "number"]})

CLIENT: Mapping[str, Shape] = {
    "key": _text("the client's key (16 characters or more)", minLength=16),
    "key_sha256": _text("the SHA-256 of the key, in hex", pattern="^[0-9a-fA-F]{64}$"),
    "routes": _texts("the routes this client may use (default: all)"),
    "rate_limit": Shape("requests per second this client may make", block="rate_limit"),
    "admin": _flag("may read /-/status and /-/metrics"),
}

RATE_LIMIT: Mapping[str, Shape] = {
    "rate": _number("sustained rate", "requests per second"),
    "burst": _integer("requests allowed at once above the rate", "requests", minimum=1),
}

BLOCKS: Mapping[str, Mapping[str, Shape]] = {
    "top": TOP,
    "limits": LIMITS,
    "upstream": UPSTREAM,
    "route": ROUTE,
    "timeout": TIMEOUT,
    "tls": TLS,
    "cors": CORS,
    "auth_common": AUTH_COMMON,
    "custom": CUSTOM,
    "request": REQUEST,
    "refresh": REFRESH,
    "token": TOKEN,
    "expiry": EXPIRY,
    "inject": INJECT,
    "adopt": ADOPT,
    "client": CLIENT,
    "rate_limit": RATE_LIMIT,
}


def _units() -> dict[str, str]:
    units: dict[str, str] = {}
    for table in BLOCKS.values():
        for key, shape in table.items():
            if shape.unit is not None:
                units.setdefault(key, shape.unit)
    return units


# The unit of each numeric key, by its name: names mean the same wherever they appear.
UNITS: Mapping[str, str] = _units()
