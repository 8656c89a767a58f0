"""The sans-io auth engine: login and refresh as generators that yield calls and receive replies.

Same contract as httpx's `Auth.auth_flow`: `call = next(flow)`, send it, `flow.send(reply)`;
the Grant arrives as `StopIteration.value`. `driver.py` is the only code that does the I/O, so every
branch here is tested without an event loop or a socket.

Errors carry the route, the upstream status and at most a short upstream error code
(`invalid_grant`) in their detail; never an answer body, a credential or a token.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeGuard
from urllib.parse import quote_plus, urlencode

from authproxy.auth import expiry
from authproxy.auth.grant import Grant
from authproxy.auth.templates import compile_template
from authproxy.auth_spec import AuthSpec, Capture, RequestSpec
from authproxy.errors import LoginRejected, LoginUnavailable
from authproxy.secrets import REGISTRY


@dataclass(frozen=True, slots=True)
class HttpCall:
    """A request for the driver to send: `path` on the upstream's origin, or an absolute URL."""

    method: str
    path: str
    headers: Mapping[str, str] = field(repr=False)  # may carry credentials
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class HttpReply:
    """The upstream's answer; header names lower-cased, body read in full."""

    status: int
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)


Flow = Generator[HttpCall, HttpReply, Grant]


def login_flow(spec: AuthSpec, route: str, now: float) -> Flow:
    """Log in with the route's credentials; raises LoginRejected (4xx) or LoginUnavailable."""
    if spec.login is None:
        raise ValueError(f"route {route!r} uses static credentials; it has no login")
    reply = yield render_call(spec.login, _revealed(spec))
    return _grant(spec, route, "login", reply, {}, now)


def can_refresh(spec: AuthSpec, grant: Grant) -> bool:
    """True when `spec` has a refresh call and `grant` holds the value it needs."""
    return spec.refresh is not None and bool(grant.values.get(spec.refresh.requires))


def refresh_flow(spec: AuthSpec, route: str, grant: Grant, now: float) -> Flow:
    """Renew `grant` without the password; the new Grant keeps values the answer does not repeat.

    Only the `token` capture is required in a refresh answer (emnify returns no new refresh token).
    Raises as `login_flow`; the caller then falls back to a login. Needs `can_refresh`.
    """
    if spec.refresh is None or not can_refresh(spec, grant):
        raise ValueError(f"route {route!r}: grant cannot be refreshed")
    reply = yield render_call(spec.refresh.request, {**_revealed(spec), **grant.values})
    return _grant(spec, route, "refresh", reply, grant.values, now)


def adopt_from_response(
    spec: AuthSpec, grant: Grant, headers: Mapping[str, str], now: float
) -> Grant | None:
    """Take over tokens rotated on an ordinary response (`spec.adopt`), or None if nothing changed.

    `headers` have lower-cased names. Blank values are ignored (devise_token_auth sends an empty
    `access-token` on batched requests); if the answer has no expiry, the old one is kept.
    """
    adopt = spec.adopt
    fresh = _text(headers.get(adopt.trigger.lower())) if adopt else None
    if adopt is None or fresh is None:
        return None
    sources = {name: header.lower() for name, header in adopt.headers.items()}
    trigger = adopt.trigger.lower()
    if any(grant.values.get(name) == fresh for name, h in sources.items() if h == trigger):
        return None
    updates = {name: value for name, h in sources.items() if (value := _text(headers.get(h)))}
    values = {**grant.values, **updates}
    expires = expiry.expires_at(spec.expiry, values, None, headers, now)
    return Grant(MappingProxyType(values), grant.expires_at if expires is None else expires, now)


def static_grant(spec: AuthSpec, now: float = 0.0) -> Grant:
    """The grant of a route without login: its credentials, valid until refused."""
    return Grant(MappingProxyType(_revealed(spec)), None, now)


def render_call(request: RequestSpec, values: Mapping[str, str]) -> HttpCall:
    """Fill `request`'s templates; a body or header field naming an absent value is left out."""
    body = _render_fields(request.body, values)
    headers = _render_fields(request.headers, values)
    if request.basic_auth is not None and (client := _render_pair(request.basic_auth, values)):
        headers["Authorization"] = _basic(*client)
    if not body:
        return HttpCall(request.method, request.path, headers, b"")
    if request.encoding == "json":
        data, content_type = json.dumps(body).encode(), "application/json"
    else:
        data, content_type = urlencode(body).encode(), "application/x-www-form-urlencoded"
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = content_type
    return HttpCall(request.method, request.path, headers, data)


def _render_fields(fields: Mapping[str, str], values: Mapping[str, str]) -> dict[str, str]:
    templates = {key: compile_template(text) for key, text in fields.items()}
    return {key: t.render(values) for key, t in templates.items() if t.names <= values.keys()}


def _render_pair(pair: tuple[str, str], values: Mapping[str, str]) -> tuple[str, str] | None:
    rendered = _render_fields({"id": pair[0], "secret": pair[1]}, values)
    return (rendered["id"], rendered["secret"]) if len(rendered) == 2 else None


def _basic(client_id: str, secret: str) -> str:
    """RFC 6749 §2.3.1: both form-encoded (Appendix B) before they are joined and base64-encoded,
    so a secret holding ':' or '%' reaches the server as it is."""
    joined = f"{quote_plus(client_id)}:{quote_plus(secret)}"
    return "Basic " + base64.b64encode(joined.encode()).decode("ascii")


def _revealed(spec: AuthSpec) -> dict[str, str]:
    return {name: secret.reveal() for name, secret in spec.credentials.items()}


def _grant(
    spec: AuthSpec, route: str, stage: str, reply: HttpReply, kept: Mapping[str, str], now: float
) -> Grant:
    _check_status(route, stage, reply)
    headers = {name.lower(): value for name, value in reply.headers.items()}
    needs_json = spec.expiry.source == "field" or any(c.source == "body" for c in spec.captures)
    body = _json(reply.body) if needs_json or spec.token_type else None
    if spec.token_type:
        _check_token_type(spec.token_type, route, stage, reply.status, body)
    values = dict(kept)
    for capture in spec.captures:
        value = _capture(capture, body, headers)
        if value is not None:
            values[capture.name] = value
        # A refresh answer may omit everything but the token; the values we hold stay valid.
        elif capture.required and (stage == "login" or capture.name == "token"):
            raise LoginUnavailable(route, _missing(stage, reply, capture, body), reply.status)
    expires = expiry.expires_at(spec.expiry, values, body, headers, now)
    return Grant(MappingProxyType(values), expires, now)


def _capture(capture: Capture, body: object, headers: Mapping[str, str]) -> str | None:
    for key in capture.keys:
        raw = expiry.lookup(body, key) if capture.source == "body" else headers.get(key.lower())
        if (value := _text(raw)) is not None:
            return value
    return None


def _text(raw: object) -> str | None:
    """A usable value: a non-blank string (or number) without control characters.

    Control characters are refused because the value will be sent in a header (CRLF injection).
    """
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or not (value := raw.strip()) or not value.isprintable():
        return None
    return value


def _missing(stage: str, reply: HttpReply, capture: Capture, body: object) -> str:
    answer = f"{stage} answer ({reply.status})"
    if capture.source == "body" and not isinstance(body, dict):
        return f"{answer} is not a JSON object; cannot read {capture.name!r}"
    return f"{answer} has no usable {capture.name!r} ({capture.source}: {', '.join(capture.keys)})"


def _check_token_type(expected: str, route: str, stage: str, status: int, body: object) -> None:
    """A `token_type` other than `expected` fails the login (RFC 6749 §7.1: without case).

    Rejected rather than transient: the provider issues the type its client registration says,
    so a retry within seconds would only mint another unusable token. An absent type is taken as
    `expected`: RFC 6749 §5.1 requires it, yet some providers leave it out.
    """
    given = body.get("token_type") if isinstance(body, dict) else None
    if given is None or (isinstance(given, str) and given.lower() == expected.lower()):
        return
    shown = f"'{given}'" if _is_code(given) else "an unsupported type"
    detail = f"{stage} answered {status} with a token of {shown}; only {expected} can be sent"
    raise LoginRejected(route, detail, status)


# An upstream error code worth reporting: short, identifier-like, and not a registered secret.
_ERROR_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,39}")
_ERROR_CODE_KEYS = ("error_token", "error_code", "code", "error")
# Codes that blame the server, not the credentials: RFC 6749 §4.1.2.1 names them for the
# authorization endpoint, and token endpoints answer them too (§5.2 allows more codes).
TRANSIENT_ERROR_CODES = frozenset({"temporarily_unavailable", "server_error"})


def _check_status(route: str, stage: str, reply: HttpReply) -> None:
    """4xx: rejected credentials (`invalid_client`, `invalid_grant`: RFC 6749 §5.2), held off;
    5xx, other statuses and the transient codes: retried with backoff. Only the code is told:
    an `error_description` or a body may quote what was sent."""
    if 200 <= reply.status < 300:
        return
    code = _error_code(_json(reply.body))
    detail = f"{stage} answered {reply.status}" + (f" ({code})" if code else "")
    rejected = 400 <= reply.status < 500 and code not in TRANSIENT_ERROR_CODES
    raise (LoginRejected if rejected else LoginUnavailable)(route, detail, reply.status)


def _error_code(body: object) -> str | None:
    """An error code from a JSON answer (`{"error": "invalid_grant"}`); never a message."""
    if not isinstance(body, dict):
        return None
    for key in _ERROR_CODE_KEYS:
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if _is_code(value):
            return value
    return None


def _is_code(value: object) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and _ERROR_CODE.fullmatch(value) is not None
        and REGISTRY.scrub(value) == value
    )


def _json(body: bytes) -> object:
    try:
        return json.loads(body)
    # ValueError covers JSONDecodeError and UnicodeDecodeError; RecursionError, absurd nesting.
    except (ValueError, RecursionError):
        return None
