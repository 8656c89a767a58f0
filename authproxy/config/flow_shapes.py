"""What each key of an `auth` block holds: the options every block takes, a custom flow's
blocks, and a preset's fields (see `config/shapes.py` for the rest of the config)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import get_args

from authproxy.auth_spec import ExpirySource
from authproxy.config.shape import (
    FRACTION,
    REFERENCE,
    Schema,
    Shape,
    flag,
    seconds,
    text,
    text_map,
    texts,
)

# One key, or alternatives tried in order (`token.key`).
_KEYS: Schema = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]
}

# The options every auth block takes, preset or custom.
AUTH_COMMON: Mapping[str, Shape] = {
    "ttl": seconds("how long a token lives, when the upstream does not say"),
    "warm": flag("log in at start instead of on the first request"),
    "renew_at": Shape(
        "renew after this fraction of the token's lifetime (0.8 for 80%)",
        {"anyOf": [{"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}, REFERENCE]},
        FRACTION,
    ),
    "relogin_after_rejection": seconds("wait after a refused login", zero=True),
    "invalid_statuses": Shape(
        "upstream statuses that mean the token is no longer valid",
        {
            "type": "array",
            "minItems": 1,
            "items": {"anyOf": [{"type": "integer", "minimum": 400, "maximum": 599}, REFERENCE]},
        },
    ),
    "timeout": seconds("time one login may take"),
}

CUSTOM: Mapping[str, Shape] = {
    "credentials": text_map("name -> value; each is masked everywhere"),
    "login": Shape("the login request; leave out for static credentials", block="request"),
    "token": Shape("where the login answer holds the token", block="token"),
    "expiry": Shape("where the token's lifetime comes from", block="expiry"),
    "refresh": Shape("renew without the password", block="refresh"),
    "inject": Shape("the headers each request gets", block="inject"),
    "adopt": Shape("new tokens the upstream hands out on ordinary answers", block="adopt"),
    "strip_response_headers": texts("response headers never passed back to the client"),
}

REQUEST: Mapping[str, Shape] = {
    "method": text("HTTP method (default POST)"),
    "path": text("absolute path on the upstream's origin", pattern="^/"),
    "url": text("an absolute http(s) URL on another origin, instead of path"),
    "format": text("how the body is encoded", enum=["json", "form"]),
    "body": text_map("field -> template"),
    "headers": text_map("header -> template"),
}

REFRESH: Mapping[str, Shape] = {
    **REQUEST,
    "requires": text("the captured value without which no refresh is tried"),
}

TOKEN: Mapping[str, Shape] = {
    "from": text("where the token is", enum=["body", "header"]),
    "key": Shape("a key (dots walk nested), or alternatives tried in order", _KEYS),
    "refresh_key": Shape("where the refresh token is, captured as {refresh_token}", _KEYS),
    "extra": Shape(
        "more values to capture: name -> key",
        {"type": "object", "additionalProperties": _KEYS},
    ),
}

EXPIRY: Mapping[str, Shape] = {
    "from": text("the source of the lifetime", enum=list(get_args(ExpirySource))),
    "key": text("the field or header holding it"),
    "seconds": seconds("the lifetime, with from: ttl"),
}

INJECT: Mapping[str, Shape] = {
    "headers": text_map("header -> template, replacing the client's"),
    "defaults": text_map("header -> template, set only when the client sent none"),
}

ADOPT: Mapping[str, Shape] = {
    "trigger": text("a response carrying this header triggers it"),
    "headers": text_map("value name -> response header"),
}

PRESET_SECRET = Shape("a credential of the preset; masked everywhere", {"type": "string"})
PRESET_OPTION = Shape("an option of the preset", {"type": ["string", "number"]})
PRESET_TABLE = text_map("a mapping option of the preset (name -> value)")
