"""Cosmic (api.cosmicjs.com): email + password for a JWT, then `Authorization: Bearer <token>`.

    POST /v1/authenticate   JSON or form: email, password
      200 {"success": true, "message": "Token created successfully.", "token": <JWT>}
      401 {"success": false, "message": ...}       wrong credentials (the password is never echoed)
    any other path          Bearer <live token issued here>, else 401 {"success": false, ...}

The JWT is HS256 with claims `email`, `iat`, `exp` = iat + `token_lifetime`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

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

NAME: Final = "cosmic"
LOGIN_PATH: Final = "/v1/authenticate"
DEMO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType(
    {"email": "demo@example.com", "password": "demo-password"}
)
STATE: Final = web.AppKey("cosmic_state", EmulatorState)


@dataclass(frozen=True, slots=True)
class CosmicSettings:
    """The one account this emulator knows, and how long its tokens live (seconds)."""

    email: str = DEMO_CREDENTIALS["email"]
    password: str = DEMO_CREDENTIALS["password"]
    token_lifetime: int = 3600


def _failure(status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "message": message}, status=status)


def make_app(
    settings: CosmicSettings | None = None, *, clock: Clock = time.time
) -> web.Application:
    """A Cosmic emulator; its state is `app[STATE]`."""
    conf = settings or CosmicSettings()
    state = EmulatorState(NAME, clock)
    key = new_secret()

    def login(fields: Mapping[str, str]) -> web.Response:
        if not fields_match(fields, {"email": conf.email, "password": conf.password}):
            return _failure(401, "Invalid email or password.")
        token = issue_jwt(key, {"email": conf.email}, now=clock(), lifetime=conf.token_lifetime)
        state.tokens.add(token, conf.token_lifetime)
        state.logins += 1
        body = {"success": True, "message": "Token created successfully.", "token": token}
        return web.json_response(body)

    def authorize(request: web.Request) -> Granted | web.Response:
        token = auth_param(request, "Bearer")
        if token and state.tokens.is_live(token):
            return GRANTED
        return _failure(401, "Unauthorized. A valid Bearer token is required.")

    app = build_app(state, LOGIN_PATH, login, authorize)
    app[STATE] = state
    return app


DEMO: Final = DemoApi(NAME, lambda clock: make_app(clock=clock), DEMO_CREDENTIALS, "/v1/buckets")
"""This API in `authproxy demo`: demo settings, the demo's login fields, a path to try."""
