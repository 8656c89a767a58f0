"""What each config key holds: its JSON Schema, its unit, a line of description.

The loader's key tuples (`TOP_KEYS`, `ROUTE_KEYS`, a preset's fields, ...) say which keys a block
may hold; these tables say what each holds, by the same names. `config/schema.py` builds the
schema from both, and the units word the loader's message for `5s` or `80%` (`config/node.py`).
An `auth` block's keys are in `config/flow_shapes.py`; the `Shape` kit in `config/shape.py`.
Any scalar may be a `${...}` reference: the schema accepts one for a number or a boolean.
"""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.config.flow_shapes import (
    ADOPT,
    AUTH_COMMON,
    CUSTOM,
    EXPIRY,
    INJECT,
    REFRESH,
    REQUEST,
    TOKEN,
)
from authproxy.config.shape import (
    Shape,
    flag,
    integer,
    number,
    seconds,
    text,
    text_map,
    texts,
)

TOP: Mapping[str, Shape] = {
    "listen": Shape(
        "HOST:PORT to accept requests on; a port alone means 127.0.0.1:PORT; port 0 picks one",
        {"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 65535}]},
    ),
    "token_store": text("'memory', a file path, or redis://host:6379/0 (rediss:// with TLS)"),
    "token_store_key": Shape(
        "a Fernet key that encrypts stored tokens (authproxy keygen), or [new, old, ...] during "
        "a rotation: writes use the first, reads accept any",
        {
            "anyOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        },
    ),
    "shutdown_grace": seconds("time in-flight requests get to finish on shutdown"),
    "limits": Shape("what a client may make the proxy wait for or hold", block="limits"),
    "upstream": Shape("the connections to upstreams", block="upstream"),
    "routes": Shape("route name -> route; requests to /<prefix>/... go upstream", block="routes"),
    "clients": Shape("client name -> client: who may call a team gateway", block="clients"),
    "allow_unauthenticated": flag("allow a non-loopback listen address without clients"),
    "allow_plaintext_store": flag("accept a Redis store without token_store_key with clients"),
    "allowed_hosts": texts("extra Host names the proxy answers to without clients"),
    "log_format": text(
        "the access lines: events, or clf (combined log format)", enum=["events", "clf"]
    ),
    "listen_mode": Shape(
        "the file mode of a unix:/path listener, in octal (0660)",
        {
            "anyOf": [
                {"type": "integer", "minimum": 0, "maximum": 0o777},
                {"type": "string", "pattern": "^(0o)?[0-7]{1,4}$"},
            ]
        },
    ),
}

LIMITS: Mapping[str, Shape] = {
    "header_timeout": seconds("time a client may take to send its request headers"),
    "keepalive_timeout": seconds("time an idle keep-alive connection stays open"),
    "max_header_size": integer("size of the request line and of each header", "bytes", minimum=1),
    "body_timeout": seconds("time a client may pause between pieces of its request body"),
    "max_connections": integer("client connections open at once", "connections", minimum=1),
    "replay_buffer_total": integer(
        "request bodies held at once for a replay after a 401; 0: never", "bytes", minimum=0
    ),
    "websocket_message": integer("size of one WebSocket message", "bytes", minimum=1),
}

UPSTREAM: Mapping[str, Shape] = {
    "busy_poll_us": integer(
        "polling after an exchange instead of sleeping", "microseconds", minimum=0, maximum=10_000
    ),
}

ROUTE: Mapping[str, Shape] = {
    "upstream": text("http(s) base URL; a base path is kept (no query or fragment)"),
    "prefix": text("path the route answers under (default /<route name>)", pattern="^/"),
    "timeout": Shape("timeouts towards the upstream", block="timeout"),
    "tls": Shape("how the upstream's certificate is checked", block="tls"),
    "forwarded_headers": flag("add X-Forwarded-For, X-Forwarded-Proto and X-Forwarded-Host"),
    "auth": Shape("how to log in; without it the route forwards without auth", block="auth"),
    "cors": Shape("browser origins that may call this route", block="cors"),
    "headers": Shape("headers set or removed on the request and the answer", block="headers"),
    "proxy": text(
        "http://[user:pass@]host[:port], or none: the outbound proxy; absent: HTTPS_PROXY, "
        "HTTP_PROXY and NO_PROXY decide"
    ),
}

HEADERS: Mapping[str, Shape] = {
    "request": Shape("edits to the request sent upstream", block="header_edits"),
    "response": Shape("edits to the answer sent back", block="header_edits"),
}

HEADER_EDITS: Mapping[str, Shape] = {
    "set": text_map("header -> value, replacing what was there"),
    "remove": texts("header names dropped"),
}

TIMEOUT: Mapping[str, Shape] = {
    "connect": seconds("time to open a connection upstream"),
    "read": seconds("time to wait for each piece of the answer"),
}

TLS: Mapping[str, Shape] = {
    "verify": flag("check the upstream's certificate"),
    "ca_file": text("an extra CA bundle to trust"),
}

CORS: Mapping[str, Shape] = {
    "origins": texts("exact origins, scheme://host[:port]", min_items=1),
    "methods": texts("HTTP methods a page may use"),
    "headers": texts("request headers a page may send"),
    "max_age": integer("time a browser may cache the preflight answer", "seconds", minimum=0),
}


CLIENT: Mapping[str, Shape] = {
    "key": text("the client's key (16 characters or more)", minLength=16),
    "key_sha256": text("the SHA-256 of the key, in hex", pattern="^[0-9a-fA-F]{64}$"),
    "routes": texts("the routes this client may use (default: all)"),
    "rate_limit": Shape("requests per second this client may make", block="rate_limit"),
    "admin": flag("may read /-/status and /-/metrics"),
}

RATE_LIMIT: Mapping[str, Shape] = {
    "rate": number("sustained rate", "requests per second"),
    "burst": integer("requests allowed at once above the rate", "requests", minimum=1),
}

BLOCKS: Mapping[str, Mapping[str, Shape]] = {
    "top": TOP,
    "limits": LIMITS,
    "upstream": UPSTREAM,
    "route": ROUTE,
    "timeout": TIMEOUT,
    "tls": TLS,
    "cors": CORS,
    "headers": HEADERS,
    "header_edits": HEADER_EDITS,
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
