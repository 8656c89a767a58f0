"""CucumberStudio: a Rails API on devise_token_auth; credentials travel in headers both ways.

    POST /api/auth/sign_in   JSON {"email", "password"}
      200 body {"data": {"email", "uid"}}, headers access-token, token-type: Bearer, client,
          expiry (POSIX seconds, now + token_lifetime), uid (= email)
      401 {"errors": ["Invalid login credentials. Please try again."]}
    any other path           headers access-token, client, uid of a live client token, else
                             401 {"errors": ["You need to sign in or sign up before continuing."]}

Each sign-in opens a new client; past `max_clients` the one nearest expiry (the oldest) is evicted,
as devise's `clean_old_tokens` does. Every authenticated answer carries the five token headers:

- `rotate_tokens=False`: `access-token` is blank; the client keeps using the one it has.
- `rotate_tokens=True` (devise's change_headers_on_each_request): a request with the client's
  current token gets a new token and expiry; the previous token is still accepted for
  `batch_window` seconds (devise's batch_request_buffer_throttle), and such a reuse rotates
  nothing and answers with blank `access-token` and `expiry`, as devise does for batch requests,
  so concurrent requests sent with one token all succeed.
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
    Clock,
    DemoApi,
    EmulatorState,
    Granted,
    build_app,
    fields_match,
)

NAME: Final = "cucumberstudio"
LOGIN_PATH: Final = "/api/auth/sign_in"
DEMO_CREDENTIALS: Final[Mapping[str, str]] = MappingProxyType(
    {"email": "demo@example.com", "password": "demo-password"}
)
ONE_YEAR: Final = 365 * 24 * 3600


@dataclass(eq=False)
class ClientToken:
    """One devise client: its current token, expiry, and the previous token's reuse deadline."""

    token: str
    expiry: int
    previous: str | None = None
    reusable_until: float = 0.0


@dataclass(eq=False)
class CucumberStudioState(EmulatorState):
    """Adds the account's open clients by client id, oldest first."""

    clients: dict[str, ClientToken] = field(default_factory=dict, repr=False)

    def revoke_all(self) -> None:
        self.clients.clear()


STATE: Final = web.AppKey("cucumberstudio_state", CucumberStudioState)


@dataclass(frozen=True, slots=True)
class CucumberStudioSettings:
    """The account, token lifetime (seconds), client limit and rotation behaviour."""

    email: str = DEMO_CREDENTIALS["email"]
    password: str = DEMO_CREDENTIALS["password"]
    token_lifetime: int = ONE_YEAR
    max_clients: int = 10
    rotate_tokens: bool = False
    batch_window: float = 5.0


def _errors(message: str) -> web.Response:
    return web.json_response({"errors": [message]}, status=401)


def make_app(
    settings: CucumberStudioSettings | None = None, *, clock: Clock = time.time
) -> web.Application:
    """A CucumberStudio emulator; its state is `app[STATE]`."""
    conf = settings or CucumberStudioSettings()
    state = CucumberStudioState(NAME, clock)

    def token_headers(client_id: str, token: str, expiry: str) -> dict[str, str]:
        return {
            "access-token": token,
            "token-type": "Bearer",
            "client": client_id,
            "expiry": expiry,
            "uid": conf.email,
        }

    def login(fields: Mapping[str, str]) -> web.Response:
        if not fields_match(fields, {"email": conf.email, "password": conf.password}):
            return _errors("Invalid login credentials. Please try again.")
        client_id, token = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
        expiry = int(clock()) + conf.token_lifetime
        state.clients[client_id] = ClientToken(token, expiry)
        while len(state.clients) > conf.max_clients:
            # min() keeps the first of equal expiries, which is the earliest sign-in.
            del state.clients[min(state.clients, key=lambda c: state.clients[c].expiry)]
        state.logins += 1
        body = {"data": {"email": conf.email, "uid": conf.email}}
        return web.json_response(body, headers=token_headers(client_id, token, str(expiry)))

    def authorize(request: web.Request) -> Granted | web.Response:
        client_id = request.headers.get("client", "")
        token = request.headers.get("access-token", "")
        entry = state.clients.get(client_id)
        now = clock()
        if (
            entry is None
            or not token
            or now >= entry.expiry
            or not fields_match(request.headers, {"uid": conf.email})
        ):
            return _errors("You need to sign in or sign up before continuing.")
        if token == entry.token and not conf.rotate_tokens:
            return Granted(token_headers(client_id, "", str(entry.expiry)))
        if token == entry.token:
            entry.previous, entry.reusable_until = token, now + conf.batch_window
            entry.token, entry.expiry = secrets.token_urlsafe(16), int(now) + conf.token_lifetime
            return Granted(token_headers(client_id, entry.token, str(entry.expiry)))
        if token == entry.previous and now < entry.reusable_until:
            return Granted(token_headers(client_id, "", ""))
        return _errors("You need to sign in or sign up before continuing.")

    app = build_app(state, LOGIN_PATH, login, authorize)
    app[STATE] = state
    return app


DEMO: Final = DemoApi(NAME, lambda clock: make_app(clock=clock), DEMO_CREDENTIALS, "/api/projects")
"""This API in `authproxy demo`: demo settings, the demo's login fields, a path to try."""
