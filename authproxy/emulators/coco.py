"""Coco Server: password (single-user) or email + password for a JWT; or a long-lived API token.

    POST /account/login     JSON {"password"} or {"email", "password"}
      200 {"access_token": <JWT>, "expire_in": <lifetime>, "id": ..., "status": "ok",
           "username": ...}
      401 {"status": "error", "error": ...}
    any other path          `Authorization: Bearer <live access_token>`
                            or `X-API-TOKEN: <api_token>`, else 401 (same shape)

`revoke_all()` invalidates issued access tokens only: the API token is configured, not issued.
"""

from __future__ import annotations

import secrets
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

NAME: Final = "coco"
LOGIN_PATH: Final = "/account/login"
USER_ID: Final = "coco-default-user"
DEMO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType(
    {"email": "demo@example.com", "password": "demo-password", "api_token": "demo-coco-api-token"}
)
STATE: Final = web.AppKey("coco_state", EmulatorState)


@dataclass(frozen=True, slots=True)
class CocoSettings:
    """The account, its API token, and the access-token lifetime (seconds; sent as expire_in)."""

    email: str = DEMO_CREDENTIALS["email"]
    password: str = DEMO_CREDENTIALS["password"]
    api_token: str = DEMO_CREDENTIALS["api_token"]
    token_lifetime: int = 86400


def _error(message: str) -> web.Response:
    return web.json_response({"status": "error", "error": message}, status=401)


def make_app(settings: CocoSettings | None = None, *, clock: Clock = time.time) -> web.Application:
    """A Coco Server emulator; its state is `app[STATE]`."""
    conf = settings or CocoSettings()
    state = EmulatorState(NAME, clock)
    key = new_secret()

    def login(fields: Mapping[str, str]) -> web.Response:
        # Single-user mode sends the password alone; multi-user mode adds the email.
        expected = {"password": conf.password}
        if "email" in fields:
            expected["email"] = conf.email
        if not fields_match(fields, expected):
            return _error("invalid email or password")
        claims = {"user_id": USER_ID, "username": USER_ID}
        token = issue_jwt(key, claims, now=clock(), lifetime=conf.token_lifetime)
        state.tokens.add(token, conf.token_lifetime)
        state.logins += 1
        body = {
            "access_token": token,
            "expire_in": conf.token_lifetime,
            "id": USER_ID,
            "status": "ok",
            "username": USER_ID,
        }
        return web.json_response(body)

    def authorize(request: web.Request) -> Granted | web.Response:
        token = auth_param(request, "Bearer")
        if token and state.tokens.is_live(token):
            return GRANTED
        api_token = request.headers.get("X-API-TOKEN", "")
        if api_token and secrets.compare_digest(api_token.encode(), conf.api_token.encode()):
            return GRANTED
        return _error("unauthorized: a valid Bearer token or X-API-TOKEN is required")

    app = build_app(state, LOGIN_PATH, login, authorize)
    app[STATE] = state
    return app


DEMO: Final = DemoApi(
    NAME,
    lambda clock: make_app(clock=clock),
    {k: v for k, v in DEMO_CREDENTIALS.items() if k != "api_token"},
    "/account/profile",
)
"""This API in `authproxy demo`: demo settings, the demo's login fields, a path to try."""
