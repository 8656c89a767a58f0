"""Shared pieces of the five emulated upstream APIs.

Each emulator is a real aiohttp app with two kinds of route, wired by `build_app`:

- its login path (POST): counted, optionally delayed or failed on demand, then answered by the
  API's own `LoginHandler` from the parsed body fields;
- every other path, any method: checked by the API's `Authorizer`, then answered with a JSON echo
  of what arrived (credential header values redacted) so tests can see what the proxy sent.

Time comes from an injected `Clock`, so tests move a fake clock instead of sleeping. Nothing here
logs, and the aiohttp access log is the caller's to disable: tokens must never reach a log line.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt
from aiohttp import web
from multidict import CIMultiDictProxy

Clock = Callable[[], float]
"""Zero-argument callable returning POSIX seconds; `time.time` outside tests."""

REDACTED: Final = "<redacted>"
CREDENTIAL_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "x-api-token",
        "access-token",
        "client",
        "uid",
        "cookie",
    }
)


def new_secret() -> str:
    """A fresh HS256 key for one emulator instance (64 hex chars: long enough for PyJWT)."""
    return secrets.token_hex(32)


def issue_jwt(secret: str, claims: Mapping[str, Any], *, now: float, lifetime: int) -> str:
    """An HS256 JWT with `claims` plus `iat`, `exp` = iat + lifetime, and a unique `jti`.

    The `jti` keeps two logins within the same second from producing the same token.
    """
    iat = int(now)
    payload = {**claims, "iat": iat, "exp": iat + lifetime, "jti": uuid.uuid4().hex}
    return jwt.encode(payload, secret, algorithm="HS256")


@dataclass(eq=False)
class TokenBook:
    """Tokens this emulator issued, each with its POSIX expiry; only live ones authenticate."""

    clock: Clock
    _expiry: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def add(self, token: str, lifetime: float) -> float:
        """Record `token` as valid for `lifetime` seconds from now; return its expiry."""
        now = self.clock()
        # Drop expired entries so a long demo run does not grow without bound.
        self._expiry = {tok: exp for tok, exp in self._expiry.items() if exp > now}
        self._expiry[token] = expires = now + lifetime
        return expires

    def is_live(self, token: str) -> bool:
        expires = self._expiry.get(token)
        return expires is not None and self.clock() < expires

    def clear(self) -> None:
        self._expiry.clear()


@dataclass(eq=False)
class EmulatorState:
    """Counters and failure switches of one emulator; tests read and flip these directly.

    `requests` and `last_headers` cover every non-login request, rejected ones included;
    `last_headers` is raw (unredacted) so tests can check what the proxy injected. Fields that
    hold credentials are left out of the repr, so printing a state never shows a token.
    """

    name: str
    clock: Clock
    logins: int = 0
    login_attempts: int = 0
    refreshes: int = 0
    requests: int = 0
    last_headers: CIMultiDictProxy[str] | None = field(default=None, repr=False)
    fail_logins_with: int | None = None
    login_delay: float = 0.0
    tokens: TokenBook = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.tokens = TokenBook(self.clock)

    def revoke_all(self) -> None:
        """Invalidate every access token issued so far; the next use answers 401."""
        self.tokens.clear()


@dataclass(frozen=True, slots=True)
class Granted:
    """An authorizer's yes; `headers` are added to the echo response (devise's token headers)."""

    headers: Mapping[str, str] = field(default_factory=dict)


GRANTED: Final = Granted()

LoginHandler = Callable[[Mapping[str, str]], web.Response]
"""Answers a login from its body fields; counts its own successes on the state."""
Authorizer = Callable[[web.Request], Granted | web.Response]
"""Grants a non-login request, or returns the API's own rejection (401/403)."""

EMULATOR_STATE: Final = web.AppKey("emulator_state", EmulatorState)


def emulator_state(app: web.Application) -> EmulatorState:
    """The state of any emulator app, typed as the common base."""
    return app[EMULATOR_STATE]


def fields_match(fields: Mapping[str, str], expected: Mapping[str, str]) -> bool:
    """Whether every expected field is present with that value (constant-time, any Unicode)."""
    results = [
        secrets.compare_digest(fields.get(name, "").encode(), value.encode())
        for name, value in expected.items()
    ]
    return all(results)


def auth_param(request: web.Request, scheme: str) -> str | None:
    """What follows `scheme` in the Authorization header ("" if nothing); None if absent/other."""
    kind, _, rest = request.headers.get("Authorization", "").strip().partition(" ")
    return rest.strip() if kind.lower() == scheme.lower() else None


async def read_fields(request: web.Request) -> dict[str, str]:
    """String fields of a JSON object or form-urlencoded body; anything unusable reads as {}."""
    data: Mapping[str, object]
    if request.content_type.endswith("json"):  # also application/vnd.api+json and the like
        try:
            parsed = await request.json()
        except ValueError:
            return {}
        data = parsed if isinstance(parsed, dict) else {}
    else:
        data = await request.post()
    return {str(key): value for key, value in data.items() if isinstance(value, str)}


def redact(headers: Mapping[str, str]) -> dict[str, str]:
    """Header names to values, credential values replaced; repeated headers joined by ", "."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        shown = REDACTED if name.lower() in CREDENTIAL_HEADERS else value
        out[name] = f"{out[name]}, {shown}" if name in out else shown
    return out


def build_app(
    state: EmulatorState, login_path: str, login: LoginHandler, authorize: Authorizer
) -> web.Application:
    """An app serving `login` at POST `login_path` and the authorized echo everywhere else.

    The caller also stores `state` under its own typed key (`app[STATE] = state`).
    """

    async def login_route(request: web.Request) -> web.Response:
        state.login_attempts += 1
        fields = await read_fields(request)
        if state.login_delay > 0:
            await asyncio.sleep(state.login_delay)
        if state.fail_logins_with is not None:
            return web.json_response({"error": "emulated failure"}, status=state.fail_logins_with)
        return login(fields)

    async def echo_route(request: web.Request) -> web.Response:
        state.requests += 1
        state.last_headers = request.headers
        verdict = authorize(request)
        if isinstance(verdict, web.Response):
            return verdict
        path, _, query = request.raw_path.partition("?")
        echo = {
            "api": state.name,
            "auth": "ok",
            "method": request.method,
            "path": path,
            "query": query,
            "headers": redact(request.headers),
            "body_bytes": len(await request.read()),
        }
        return web.json_response(echo, headers=verdict.headers)

    app = web.Application()
    app[EMULATOR_STATE] = state
    app.router.add_post(login_path, login_route)
    app.router.add_route("*", "/{tail:.*}", echo_route)
    return app


@dataclass(frozen=True, slots=True)
class DemoApi:
    """What an emulator declares for `authproxy demo`: how to serve it with demo settings, the
    preset fields the demo logs in with, and a path worth trying. A sixth emulator that declares
    one and is listed in `emulators.DEMOS` is in the demo; nothing else changes."""

    name: str
    make_app: Callable[[Clock], web.Application]
    login: Mapping[str, str]  # the preset's fields for the demo (the login flow, not a static one)
    sample_path: str
