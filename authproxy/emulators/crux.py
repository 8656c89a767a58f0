"""Crux Connect: a Django REST framework API using DRF's TokenAuthentication.

    POST /timp/organizations/user-login/   JSON {"username", "password"}
      200 {<token_key>: "<40 hex chars>"}
      400 {"non_field_errors": ["Unable to log in with provided credentials."]}   (DRF's answer)
      400 {"username": ["This field is required."], ...}                          missing fields
    any other path      `Authorization: Token <key>`:
      no credentials    401 {"detail": "Authentication credentials were not provided."}
      bad or expired    401 {"detail": "Invalid token."}
                        (both 401s carry `WWW-Authenticate: Token`, as DRF sends)
      /forbidden...     403 {"detail": "You do not have permission to perform this action."}

Like DRF's `Token.objects.get_or_create`, logging in again returns the same key while it lives
(`reuse_live_token=False`: a new key on every login). The lifetime is enforced here but never
announced to the client.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
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
)

NAME: Final = "crux"
LOGIN_PATH: Final = "/timp/organizations/user-login/"
FORBIDDEN_PREFIX: Final = "/forbidden"
DEMO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType(
    {"username": "demo", "password": "demo-password"}
)


@dataclass(eq=False)
class CruxState(EmulatorState):
    """Adds the user's current key: DRF keeps one token per user."""

    current_token: str | None = field(default=None, repr=False)


STATE: Final = web.AppKey("crux_state", CruxState)


@dataclass(frozen=True, slots=True)
class CruxSettings:
    """The account, the login answer's key name, and the token lifetime (seconds)."""

    username: str = DEMO_CREDENTIALS["username"]
    password: str = DEMO_CREDENTIALS["password"]
    token_key: str = "auth_token"
    token_lifetime: float = 7200
    reuse_live_token: bool = True


def _detail(status: int, detail: str) -> web.Response:
    # DRF answers both authentication failures with the scheme its TokenAuthentication expects.
    headers = {"WWW-Authenticate": "Token"} if status == 401 else None
    return web.json_response({"detail": detail}, status=status, headers=headers)


def make_app(settings: CruxSettings | None = None, *, clock: Clock = time.time) -> web.Application:
    """A Crux Connect emulator; its state is `app[STATE]`."""
    conf = settings or CruxSettings()
    state = CruxState(NAME, clock)

    def login(fields: Mapping[str, str]) -> web.Response:
        required = ("username", "password")
        missing = {name: ["This field is required."] for name in required if not fields.get(name)}
        if missing:
            return web.json_response(missing, status=400)
        if not fields_match(fields, {"username": conf.username, "password": conf.password}):
            errors = ["Unable to log in with provided credentials."]
            return web.json_response({"non_field_errors": errors}, status=400)
        current = state.current_token
        if not conf.reuse_live_token or current is None or not state.tokens.is_live(current):
            state.current_token = secrets.token_hex(20)
            state.tokens.add(state.current_token, conf.token_lifetime)
        state.logins += 1
        return web.json_response({conf.token_key: state.current_token})

    def authorize(request: web.Request) -> Granted | web.Response:
        key = auth_param(request, "Token")
        if key is None:
            return _detail(401, "Authentication credentials were not provided.")
        if not key:
            return _detail(401, "Invalid token header. No credentials provided.")
        if not state.tokens.is_live(key):
            return _detail(401, "Invalid token.")
        if request.path.startswith(FORBIDDEN_PREFIX):
            return _detail(403, "You do not have permission to perform this action.")
        return GRANTED

    app = build_app(state, LOGIN_PATH, login, authorize)
    app[STATE] = state
    return app


DEMO: Final = DemoApi(
    NAME, lambda clock: make_app(clock=clock), DEMO_CREDENTIALS, "/api/v1/orders/"
)
"""This API in `authproxy demo`: demo settings, the demo's login fields, a path to try."""
