"""A token endpoint on its own origin that misbehaves: answers the real provider will not give.

Three loopback servers: the token endpoint (scripted answers), the API, and a bystander a
redirect points at. What each one received shows where credentials went.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from authfakes import route, running_proxy, settings_for

from authproxy.auth.clock import ManualClock

CLIENT_ID, CLIENT_SECRET = "client-0c4b7e", "secret-9d2f61a8"
DESCRIPTION = "maintenance-window-note-4af1"  # an error_description: never read, never shown
TOKEN = {"access_token": "at-7b1c9e0f", "token_type": "Bearer", "expires_in": 600}


@dataclass
class Server:
    url: str = ""
    answers: list[web.Response] = field(default_factory=list)
    seen: list[web.Request] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append(request)
        return self.answers.pop(0) if self.answers else web.json_response({"ok": True})


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        yield server
    finally:
        await runner.cleanup()


def oauth2(api: Server, idp: Server) -> dict[str, object]:
    return route(
        api.url,
        preset="oauth2",
        token_url=f"{idp.url}/oauth2/token",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
    )


def oauth_error(status: int, code: str) -> web.Response:
    return web.json_response({"error": code, "error_description": DESCRIPTION}, status=status)


async def test_a_redirect_from_the_token_endpoint_is_not_followed() -> None:
    async with (
        serving(Server()) as api,
        serving(Server()) as idp,
        serving(Server()) as bystander,
    ):
        idp.answers.append(
            web.Response(status=307, headers={"Location": f"{bystander.url}/oauth2/token"})
        )
        async with running_proxy(settings_for({"api": oauth2(api, idp)})) as running:
            reply = await running.get("/api/things")
    assert reply.status == 502
    assert reply.json()["detail"] == "login answered 307"
    assert reply.json()["type"] == "urn:authproxy:problem:login-unavailable"
    assert [request.path for request in idp.seen] == ["/oauth2/token"]
    assert bystander.seen == []  # the client's credentials never went where the redirect said
    assert api.seen == []


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (lambda: oauth_error(400, "temporarily_unavailable"), "login-unavailable"),
        (lambda: oauth_error(503, "temporarily_unavailable"), "login-unavailable"),
        (lambda: web.Response(status=502, text=DESCRIPTION), "login-unavailable"),
        (lambda: oauth_error(400, "invalid_grant"), "login-rejected"),
        (lambda: oauth_error(401, "invalid_client"), "login-rejected"),
    ],
)
async def test_transient_errors_are_retried_soon_and_rejections_are_held(
    answer: Callable[[], web.Response], kind: str, log_stream: io.StringIO
) -> None:
    clock = ManualClock()
    async with serving(Server()) as api, serving(Server()) as idp:
        idp.answers.append(answer())
        idp.answers.append(web.json_response(TOKEN))
        async with running_proxy(settings_for({"api": oauth2(api, idp)}), clock) as running:
            failed = await running.get("/api/things")
            assert failed.status == 502
            assert failed.json()["type"] == f"urn:authproxy:problem:{kind}"
            clock.advance(2)  # past the first transient backoff (1 s), far within the hold
            again = await running.get("/api/things")
    if kind == "login-unavailable":
        assert (again.status, len(idp.seen)) == (200, 2)
        assert api.seen[0].headers["Authorization"] == f"Bearer {TOKEN['access_token']}"
    else:
        assert (again.status, len(idp.seen)) == (502, 1)
    rendered = log_stream.getvalue() + failed.body.decode() + again.body.decode()
    assert DESCRIPTION not in rendered
    assert CLIENT_SECRET not in rendered


async def test_a_token_url_on_the_upstreams_own_origin() -> None:
    async with serving(Server()) as both:
        both.answers.append(web.json_response(TOKEN))
        async with running_proxy(settings_for({"api": oauth2(both, both)})) as running:
            reply = await running.get("/api/things")
    assert reply.status == 200
    assert [request.path for request in both.seen] == ["/oauth2/token", "/things"]
    assert both.seen[1].headers["Authorization"] == f"Bearer {TOKEN['access_token']}"
