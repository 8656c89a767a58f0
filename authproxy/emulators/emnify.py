"""emnify: one login endpoint, three kinds of credential, JWT bearer tokens, and an account lock.

    POST /api/v1/authenticate   JSON, one of:
      {"username", "password"}  password = SHA-1 hex of the account password (`password_hash`)
                                200 {"auth_token": <JWT>, "refresh_token": <opaque>}
      {"refresh_token"}         200 {"auth_token"}; the refresh token stays valid
      {"application_token"}     200 {"auth_token"}
      otherwise                 401 {"error_code": 401, "error_token": ..., "message": ...}
    any other path              `Authorization: Bearer <live auth_token>`, else 401 (same shape)

After `lock_after` consecutive failed username/password logins the username is locked for
`state.lock_seconds`: every login for it then answers 401, even with the right password, and
`state.locked_rejections` counts those answers. The lock, like emnify's, is why a proxy must not
retry rejected credentials.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Literal

from aiohttp import web

from authproxy.emulators.common import (
    GRANTED,
    Clock,
    DemoApi,
    EmulatorState,
    Granted,
    auth_param,
    build_app,
    fields_match,
    issue_jwt,
    new_secret,
)

NAME: Final = "emnify"
LOGIN_PATH: Final = "/api/v1/authenticate"
DEMO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "username": "demo@example.com",
        "password": "demo-password",  # plain; the client sends its SHA-1 hex
        "application_token": "demo-emnify-application-token",
    }
)


@dataclass(eq=False)
class EmnifyState(EmulatorState):
    """Adds the lock (a live switch), per-username failure counts, and refresh tokens."""

    lock_seconds: float = 300.0
    locked_rejections: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set, repr=False)

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token issued so far (auth tokens keep working)."""
        self.refresh_tokens.clear()


STATE: Final = web.AppKey("emnify_state", EmnifyState)


@dataclass(frozen=True, slots=True)
class EmnifySettings:
    """The account, how its password travels, token lifetime (seconds) and lock policy."""

    username: str = DEMO_CREDENTIALS["username"]
    password: str = DEMO_CREDENTIALS["password"]
    application_token: str = DEMO_CREDENTIALS["application_token"]
    password_hash: Literal["sha1", "none"] = "sha1"
    token_lifetime: int = 240 * 60
    lock_after: int = 3
    lock_seconds: float = 300.0


def _error(token: str, message: str) -> web.Response:
    body = {"error_code": 401, "error_token": token, "message": message}
    return web.json_response(body, status=401)


def make_app(
    settings: EmnifySettings | None = None, *, clock: Clock = time.time
) -> web.Application:
    """An emnify emulator; its state is `app[STATE]`."""
    conf = settings or EmnifySettings()
    state = EmnifyState(NAME, clock, lock_seconds=conf.lock_seconds)
    key = new_secret()
    wire_password = (
        hashlib.sha1(conf.password.encode()).hexdigest()
        if conf.password_hash == "sha1"
        else conf.password
    )

    def auth_token(subject: str) -> str:
        token = issue_jwt(key, {"sub": subject}, now=clock(), lifetime=conf.token_lifetime)
        state.tokens.add(token, conf.token_lifetime)
        return token

    def password_login(username: str, fields: Mapping[str, str]) -> web.Response:
        now = clock()
        if now < state.locked_until.get(username, 0.0):
            state.locked_rejections += 1
            return _error("account_locked", "Too many failed logins; the account is locked.")
        if not fields_match(fields, {"username": conf.username, "password": wire_password}):
            state.failures[username] = failures = state.failures.get(username, 0) + 1
            if failures >= conf.lock_after:
                state.locked_until[username] = now + state.lock_seconds
                state.failures[username] = 0
            return _error("invalid_credentials", "Invalid username or password.")
        state.failures.pop(username, None)
        refresh_token = secrets.token_urlsafe(32)
        state.refresh_tokens.add(refresh_token)
        state.logins += 1
        return web.json_response(
            {"auth_token": auth_token(username), "refresh_token": refresh_token}
        )

    def login(fields: Mapping[str, str]) -> web.Response:
        if "username" in fields:
            return password_login(fields["username"], fields)
        if fields.get("refresh_token", "") in state.refresh_tokens:
            state.refreshes += 1
            return web.json_response({"auth_token": auth_token(conf.username)})
        if fields_match(fields, {"application_token": conf.application_token}):
            state.logins += 1
            return web.json_response({"auth_token": auth_token("application")})
        return _error("invalid_credentials", "Invalid or revoked token.")

    def authorize(request: web.Request) -> Granted | web.Response:
        token = auth_param(request, "Bearer")
        if token and state.tokens.is_live(token):
            return GRANTED
        return _error("unauthorized", "A valid Bearer auth_token is required.")

    app = build_app(state, LOGIN_PATH, login, authorize)
    app[STATE] = state
    return app


DEMO: Final = DemoApi(
    NAME,
    lambda clock: make_app(clock=clock),
    {k: v for k, v in DEMO_CREDENTIALS.items() if k != "application_token"},
    "/api/v1/endpoint",
)
"""This API in `authproxy demo`: demo settings, the demo's login fields, a path to try."""
