"""No secret in anything the proxy renders: its log, its error bodies, `/-/status` and `/-/ready`.

A proxy with every preset runs logins, a rejected login, an outage, 401 recoveries, a refresh, token
rotation and a 403 while the real logging pipeline renders JSON into a StringIO. Then every literal
credential, and every token and refresh token the emulators issued, is searched for in all of it.
`capture_logs` would bypass the redaction processor, so the rendered text is what is searched.
"""

from __future__ import annotations

import hashlib
import io
from contextlib import AsyncExitStack

from authfakes import Emulator, RunningProxy, route, running_proxy, serve, settings_for, wait_until

from authproxy.auth.clock import ManualClock
from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify
from authproxy.emulators.crux import CruxState
from authproxy.emulators.cucumberstudio import CucumberStudioState
from authproxy.emulators.emnify import EmnifyState

COSMIC_EMAIL, COSMIC_PASSWORD = "leak-cosmic@example.test", "cosmic-pass-5b2e91d0"
EMNIFY_USER, EMNIFY_PASSWORD = "leak-emnify-user", "emnify-pass-c4d8a07e"
CRUX_USER, CRUX_PASSWORD = "leak-crux-user", "crux-pass-77aa10f3"
CS_EMAIL, CS_PASSWORD = "leak-cs@example.test", "cs-pass-90ff12ab"
COCO_API_TOKEN = "coco-api-token-3e5f7a9b"
WRONG_PASSWORD = "wrong-pass-1d2c3b4a"
LITERALS = (
    COSMIC_EMAIL,
    COSMIC_PASSWORD,
    EMNIFY_USER,
    EMNIFY_PASSWORD,
    hashlib.sha1(EMNIFY_PASSWORD.encode()).hexdigest(),  # what emnify's login actually sends
    CRUX_USER,
    CRUX_PASSWORD,
    CS_EMAIL,
    CS_PASSWORD,
    COCO_API_TOKEN,
    WRONG_PASSWORD,
    hashlib.sha1(WRONG_PASSWORD.encode()).hexdigest(),
)


class Issued:
    """Every credential value the emulators handed out, gathered as the test goes."""

    def __init__(self) -> None:
        self.values: set[str] = set()

    def take(self, *emulators: Emulator) -> None:
        for emu in emulators:
            state = emu.state
            headers = state.last_headers
            if headers is not None:
                for name in ("Authorization", "access-token", "client", "X-API-TOKEN"):
                    for value in headers.getall(name, []):
                        self.values.add(value.rpartition(" ")[2])
            if isinstance(state, EmnifyState):
                self.values.update(state.refresh_tokens)
            if isinstance(state, CruxState) and state.current_token:
                self.values.add(state.current_token)
            if isinstance(state, CucumberStudioState):
                for client_id, entry in state.clients.items():
                    self.values.update({client_id, entry.token, entry.previous or ""})
        self.values.discard("")


async def exercise(proxy: RunningProxy, clock: ManualClock, emus: dict[str, Emulator]) -> Issued:
    issued = Issued()

    async def get(path: str, status: int) -> None:
        reply = await proxy.get(path)
        assert reply.status == status, (path, reply.body)
        issued.take(*emus.values())

    for name in ("cosmic", "emnify", "crux", "cs", "coco"):
        await get(f"/{name}/first", 200)
    for _ in range(3):
        await get("/cs/rotating", 200)
        clock.advance(6)
    await get("/emnify-bad/x", 502)
    await get("/emnify-bad/y", 502)
    emus["down"].state.fail_logins_with = 503
    await get("/down/x", 502)
    await get("/crux/forbidden/x", 403)
    for name in ("cosmic", "crux", "cs", "emnify"):
        emus[name].state.revoke_all()
        await get(f"/{name}/after-revoke", 200)
    for name in ("cosmic", "emnify", "crux", "cs"):
        await get(f"/{name}/refresh-me", 200)
    clock.advance(85)  # cosmic and emnify are due: renewal (emnify by refresh)
    await get("/cosmic/due", 200)
    await get("/emnify/due", 200)
    emnify_state = emus["emnify"].state
    await wait_until(lambda: emnify_state.refreshes == 1, "emnify's refresh")
    await wait_until(lambda: emus["cosmic"].state.logins == 3, "cosmic's renewal")
    await get("/cosmic/renewed", 200)
    await get("/emnify/renewed", 200)
    assert isinstance(emnify_state, EmnifyState)
    emnify_state.revoke_refresh_tokens()
    clock.advance(85)
    await get("/emnify/due-again", 200)
    await wait_until(lambda: emnify_state.logins == 3, "emnify's password login")
    await get("/emnify/last", 200)
    for path, accept in (("/-/status", "application/json"), ("/-/status", "text/html")):
        assert (await proxy.get(path, headers={"Accept": accept})).status == 200
    assert (await proxy.get("/-/ready")).status == 503  # emnify-bad is rejected
    return issued


async def test_no_secret_in_log_error_bodies_or_status(log_stream: io.StringIO) -> None:
    clock = ManualClock()
    apps = {
        "cosmic": (
            cosmic.make_app(
                cosmic.CosmicSettings(COSMIC_EMAIL, COSMIC_PASSWORD, 100), clock=clock.now
            ),
            cosmic.LOGIN_PATH,
        ),
        "emnify": (
            emnify.make_app(
                emnify.EmnifySettings(EMNIFY_USER, EMNIFY_PASSWORD, token_lifetime=100),
                clock=clock.now,
            ),
            emnify.LOGIN_PATH,
        ),
        "emnify-bad": (
            emnify.make_app(emnify.EmnifySettings(EMNIFY_USER, EMNIFY_PASSWORD), clock=clock.now),
            emnify.LOGIN_PATH,
        ),
        "crux": (
            crux.make_app(crux.CruxSettings(CRUX_USER, CRUX_PASSWORD), clock=clock.now),
            crux.LOGIN_PATH,
        ),
        "cs": (
            cucumberstudio.make_app(
                cucumberstudio.CucumberStudioSettings(CS_EMAIL, CS_PASSWORD, rotate_tokens=True),
                clock=clock.now,
            ),
            cucumberstudio.LOGIN_PATH,
        ),
        "coco": (
            coco.make_app(coco.CocoSettings(api_token=COCO_API_TOKEN), clock=clock.now),
            coco.LOGIN_PATH,
        ),
        "down": (cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH),
    }
    auths: dict[str, dict[str, object]] = {
        "cosmic": {"preset": "cosmic", "email": COSMIC_EMAIL, "password": COSMIC_PASSWORD},
        "emnify": {"preset": "emnify", "username": EMNIFY_USER, "password": EMNIFY_PASSWORD},
        "emnify-bad": {"preset": "emnify", "username": EMNIFY_USER, "password": WRONG_PASSWORD},
        "crux": {"preset": "crux", "username": CRUX_USER, "password": CRUX_PASSWORD},
        "cs": {"preset": "cucumberstudio", "email": CS_EMAIL, "password": CS_PASSWORD},
        "coco": {"preset": "coco", "api_token": COCO_API_TOKEN},
        "down": {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS},
    }
    emus: dict[str, Emulator] = {}
    async with AsyncExitStack() as running:
        for name, (app, login_path) in apps.items():
            emus[name] = await running.enter_async_context(serve(app, login_path))
        routes = {name: route(emus[name].url, **auth) for name, auth in auths.items()}
        proxy = await running.enter_async_context(running_proxy(settings_for(routes), clock))
        issued = await exercise(proxy, clock, emus)
        for manager in proxy.proxy.managers.values():
            if (grant := manager.current_grant) is not None:
                issued.values.update(grant.values.values())
    # Read after shutdown, so the shutdown's own log lines are searched too.
    rendered = {"log": log_stream.getvalue()}
    for index, reply in enumerate(proxy.replies):
        head = "\n".join(f"{k}: {v}" for k, v in reply.headers.items())
        if reply.status >= 400 or b'"routes"' in reply.body or b"<html" in reply.body:
            rendered[f"reply {index} ({reply.status})"] = head + "\n" + reply.body.decode()
        else:  # an upstream's own answer: its headers only (the echo body is the emulator's)
            rendered[f"reply {index} headers"] = head

    # The run did what it claims: these events were rendered, so their absence below means
    # redaction, not an empty log.
    log = rendered["log"]
    for event in ("token obtained", "login failed", "token refused by the upstream", "request"):
        assert f'"event": "{event}' in log, event
    assert len(issued.values) >= 15
    secrets = {*LITERALS, *issued.values}
    leaks = {
        (where, secret[:6] + "...")
        for where, text in rendered.items()
        for secret in secrets
        if secret in text
    }
    assert not leaks
