"""Each preset end to end: client -> proxy -> emulator on real sockets, and the 401/403 rules.

The client never holds a credential. What the emulator received (`state.last_headers`, raw) shows
what the proxy injected; the emulator's counters show how many logins it took.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import ClientSession, web
from authfakes import (
    BOUND,
    Emulator,
    RunningProxy,
    route,
    running_proxy,
    serve,
    settings_for,
    wait_until,
)
from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.auth.clock import ManualClock
from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify
from authproxy.emulators.common import EmulatorState
from authproxy.emulators.crux import CruxState
from authproxy.emulators.cucumberstudio import CucumberStudioState

CLIENT_AUTH = "Bearer client-own-credential-0a1b2c"
CLIENT_TOKEN = "Token client-own-credential-3d4e5f"
VND_ACCEPT = "application/vnd.api+json; version=1"
DEVISE_HEADERS = ("access-token", "client", "uid", "expiry", "token-type")

Check = Callable[[CIMultiDictProxy[str], EmulatorState], None]


def bearer_check(headers: CIMultiDictProxy[str], state: EmulatorState) -> None:
    scheme, _, token = headers["Authorization"].partition(" ")
    assert scheme == "Bearer"
    assert state.tokens.is_live(token)


def crux_check(headers: CIMultiDictProxy[str], state: EmulatorState) -> None:
    assert isinstance(state, CruxState)
    assert headers["Authorization"] == f"Token {state.current_token}"


def devise_check(headers: CIMultiDictProxy[str], state: EmulatorState) -> None:
    assert isinstance(state, CucumberStudioState)
    entry = state.clients[headers["client"]]
    assert headers["access-token"] == entry.token
    assert headers["uid"] == cucumberstudio.DEMO_CREDENTIALS["email"]
    assert headers.getall("Accept") == [VND_ACCEPT]  # the client sent none
    assert "Authorization" not in headers


@dataclass(frozen=True, slots=True)
class Case:
    route: str
    make: Callable[[ManualClock], web.Application]
    login_path: str
    auth: dict[str, object]
    lifetime: int | None
    check: Check


CASES = [
    Case(
        "cosmic",
        lambda c: cosmic.make_app(cosmic.CosmicSettings(token_lifetime=1800), clock=c.now),
        cosmic.LOGIN_PATH,
        {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS},
        1800,  # the JWT's exp
        bearer_check,
    ),
    Case(
        "coco",
        lambda c: coco.make_app(coco.CocoSettings(token_lifetime=900), clock=c.now),
        coco.LOGIN_PATH,
        {"preset": "coco", "email": "demo@example.com", "password": "demo-password"},
        900,  # expire_in
        bearer_check,
    ),
    Case(
        "coco-single-user",
        lambda c: coco.make_app(coco.CocoSettings(token_lifetime=901), clock=c.now),
        coco.LOGIN_PATH,
        {"preset": "coco", "password": "demo-password"},
        901,
        bearer_check,
    ),
    Case(
        "crux",
        lambda c: crux.make_app(clock=c.now),
        crux.LOGIN_PATH,
        {"preset": "crux", **crux.DEMO_CREDENTIALS},
        None,  # never announced: valid until a 401
        crux_check,
    ),
    Case(
        "cucumberstudio",
        lambda c: cucumberstudio.make_app(
            cucumberstudio.CucumberStudioSettings(token_lifetime=7200), clock=c.now
        ),
        cucumberstudio.LOGIN_PATH,
        {"preset": "cucumberstudio", **cucumberstudio.DEMO_CREDENTIALS},
        7200,  # the expiry header
        devise_check,
    ),
    Case(
        "emnify",
        lambda c: emnify.make_app(emnify.EmnifySettings(token_lifetime=600), clock=c.now),
        emnify.LOGIN_PATH,
        {"preset": "emnify", "username": "demo@example.com", "password": "demo-password"},
        600,
        bearer_check,
    ),
    Case(
        "emnify-app",
        lambda c: emnify.make_app(emnify.EmnifySettings(token_lifetime=601), clock=c.now),
        emnify.LOGIN_PATH,
        {"preset": "emnify", "application_token": emnify.DEMO_CREDENTIALS["application_token"]},
        601,
        bearer_check,
    ),
]
LOGIN_CASES = {case.route: case for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.route)
async def test_preset_logs_in_and_injects(case: Case) -> None:
    clock = ManualClock()
    async with serve(case.make(clock), case.login_path) as emu:
        settings = settings_for({case.route: route(emu.url, **case.auth)})
        async with running_proxy(settings, clock) as proxy:
            # Two Authorization lines, in two spellings: neither may get through.
            own = CIMultiDict([("Authorization", CLIENT_AUTH), ("authorization", CLIENT_TOKEN)])
            reply = await proxy.get(f"/{case.route}/anything", params={"q": "1"}, headers=own)
            assert reply.status == 200, reply.body
            echo = reply.json()
            assert (echo["auth"], echo["path"], echo["query"]) == ("ok", "/anything", "q=1")
            assert (emu.state.logins, emu.state.login_attempts) == (1, 1)
            seen = emu.state.last_headers
            assert seen is not None
            assert not {CLIENT_AUTH, CLIENT_TOKEN} & set(seen.getall("Authorization", []))
            case.check(seen, emu.state)

            token = await proxy.status(case.route)
            assert token["expires_in_seconds"] == case.lifetime
            assert (token["state"], token["logins"]) == ("valid", 1)

            # A second request reuses the token: still one login.
            assert (await proxy.get(f"/{case.route}/again")).status == 200
            assert emu.state.logins == 1


async def test_cucumberstudio_keeps_client_accept_and_hides_token_headers() -> None:
    clock = ManualClock()
    app = cucumberstudio.make_app(clock=clock.now)
    async with serve(app, cucumberstudio.LOGIN_PATH) as emu:
        auth = {"preset": "cucumberstudio", **cucumberstudio.DEMO_CREDENTIALS}
        async with running_proxy(settings_for({"cs": route(emu.url, **auth)}), clock) as proxy:
            reply = await proxy.get("/cs/api/projects", headers={"Accept": "application/json"})
            assert reply.status == 200
            assert emu.state.last_headers is not None
            assert emu.state.last_headers.getall("Accept") == ["application/json"]
            # The emulator answered with all five devise headers; none reaches the client.
            assert not [name for name in DEVISE_HEADERS if name in reply.headers]


async def test_coco_static_api_token_never_logs_in() -> None:
    clock = ManualClock()
    api_token = coco.DEMO_CREDENTIALS["api_token"]
    async with serve(coco.make_app(clock=clock.now), coco.LOGIN_PATH) as emu:
        settings = settings_for({"coco": route(emu.url, preset="coco", api_token=api_token)})
        async with running_proxy(settings, clock) as proxy:
            reply = await proxy.get("/coco/account/profile", headers={"Authorization": CLIENT_AUTH})
            assert reply.status == 200
            seen = emu.state.last_headers
            assert seen is not None
            assert seen["X-API-TOKEN"] == api_token
            assert "Authorization" not in seen
            assert emu.state.login_attempts == 0
            assert (await proxy.status("coco"))["static"] is True


async def sign_in(emu: Emulator) -> dict[str, str]:
    """Sign in to the CucumberStudio emulator directly, as a browser would."""
    async with ClientSession() as http:
        body = dict(cucumberstudio.DEMO_CREDENTIALS)
        async with http.post(emu.url + cucumberstudio.LOGIN_PATH, json=body) as response:
            assert response.status == 200
            return {key: response.headers[key] for key in ("access-token", "client", "uid")}


async def test_cucumberstudio_static_headers() -> None:
    clock = ManualClock()
    async with serve(cucumberstudio.make_app(clock=clock.now), cucumberstudio.LOGIN_PATH) as emu:
        session = await sign_in(emu)
        auth = {
            "preset": "cucumberstudio",
            "access_token": session["access-token"],
            "client": session["client"],
            "uid": session["uid"],
        }
        async with running_proxy(settings_for({"cs": route(emu.url, **auth)}), clock) as proxy:
            reply = await proxy.get("/cs/api/projects", headers={"Authorization": CLIENT_AUTH})
            assert reply.status == 200
            assert not [name for name in DEVISE_HEADERS if name in reply.headers]
            seen = emu.state.last_headers
            assert seen is not None
            assert {key: seen[key] for key in session} == session
            assert "Authorization" not in seen
            assert seen["Accept"] == VND_ACCEPT
            assert emu.state.login_attempts == 1  # ours, above; the proxy never signed in


# ---- single-flight ---------------------------------------------------------------------------


async def test_hundred_concurrent_first_requests_share_one_login() -> None:
    clock = ManualClock()
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        emu.state.login_delay = 0.3  # a slow login, so the requests pile up behind it
        auth = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
        async with running_proxy(settings_for({"cosmic": route(emu.url, **auth)}), clock) as proxy:
            replies = await asyncio.gather(*(proxy.get(f"/cosmic/n/{i}") for i in range(100)))
            assert [r.status for r in replies] == [200] * 100
            assert (emu.state.login_attempts, emu.state.logins) == (1, 1)
            assert emu.state.requests == 100


# ---- 401 from the upstream ---------------------------------------------------------------------


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def cosmic_proxy(clock: ManualClock) -> AsyncIterator[tuple[Emulator, RunningProxy]]:
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        auth = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
        async with running_proxy(settings_for({"cosmic": route(emu.url, **auth)}), clock) as proxy:
            assert (await proxy.get("/cosmic/warm-up")).status == 200
            assert emu.state.logins == 1
            yield emu, proxy


@pytest.mark.parametrize("case", [c for c in CASES if c.route != "emnify-app"], ids=str)
async def test_upstream_401_relogs_in_and_replays_get(case: Case) -> None:
    clock = ManualClock()
    async with serve(case.make(clock), case.login_path) as emu:
        settings = settings_for({case.route: route(emu.url, **case.auth)})
        async with running_proxy(settings, clock) as proxy:
            assert (await proxy.get(f"/{case.route}/a")).status == 200
            emu.state.revoke_all()
            before = emu.state.requests
            reply = await proxy.get(f"/{case.route}/b")
            assert reply.status == 200
            assert emu.state.logins == 2
            assert emu.state.requests == before + 2  # the 401, then the replay
            assert emu.state.last_headers is not None
            case.check(emu.state.last_headers, emu.state)


async def test_upstream_401_replays_small_post_body_intact(
    cosmic_proxy: tuple[Emulator, RunningProxy],
) -> None:
    emu, proxy = cosmic_proxy
    emu.state.revoke_all()
    body = b'{"title": "replayed", "bytes": "' + bytes(range(65, 91)) * 20 + b'"}'
    reply = await proxy.request("POST", "/cosmic/v1/objects", data=body)
    assert reply.status == 200
    assert reply.json()["method"] == "POST"
    assert emu.state.logins == 2
    assert emu.tap.bodies[-2:] == [body, body]  # refused once, then replayed whole


async def test_concurrent_401s_cause_one_relogin(
    cosmic_proxy: tuple[Emulator, RunningProxy],
) -> None:
    emu, proxy = cosmic_proxy
    emu.state.revoke_all()
    emu.tap.hold_logins()
    before = emu.state.requests
    tasks = asyncio.gather(*(proxy.get(f"/cosmic/burst/{i}") for i in range(20)))
    # Every request has met its 401 and the one re-login is held: the herd is fully formed.
    await wait_until(
        lambda: emu.state.requests >= before + 20 and emu.tap.held >= 1, "20 refusals", 500
    )
    assert emu.state.requests == before + 20
    assert emu.tap.held == 1
    emu.tap.release_logins()
    replies = await asyncio.wait_for(tasks, BOUND)
    assert [r.status for r in replies] == [200] * 20
    assert (emu.state.login_attempts, emu.state.logins) == (2, 2)


async def test_late_401s_reuse_the_new_token(cosmic_proxy: tuple[Emulator, RunningProxy]) -> None:
    """Refusals of the old token that arrive after the re-login finished log in no more."""
    emu, proxy = cosmic_proxy
    emu.state.revoke_all()
    emu.tap.holding_refusals = True
    tasks = asyncio.gather(*(proxy.get(f"/cosmic/late/{i}") for i in range(10)))
    await wait_until(lambda: emu.tap.held_refusals == 10, "10 refusals held")
    emu.tap.release_refusals(1)
    await wait_until(lambda: emu.state.logins == 2, "the one re-login")
    # The first request's replay (new token) was answered: now the other nine learn of their 401.
    await wait_until(lambda: emu.state.requests == 1 + 10 + 1, "the first replay")
    emu.tap.release_refusals(9)
    replies = await asyncio.wait_for(tasks, BOUND)
    assert [r.status for r in replies] == [200] * 10
    assert (emu.state.login_attempts, emu.state.logins) == (2, 2)


async def test_streamed_body_is_not_replayed(cosmic_proxy: tuple[Emulator, RunningProxy]) -> None:
    emu, proxy = cosmic_proxy
    emu.state.revoke_all()

    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"one,", b"two,", b"three"):
            yield part

    reply = await proxy.request("POST", "/cosmic/v1/upload", data=chunks())
    assert reply.status == 401
    assert emu.tap.bodies[-1] == b"one,two,three"
    assert emu.state.login_attempts == 1
    # The next buffered request recovers as usual.
    assert (await proxy.get("/cosmic/after")).status == 200
    assert emu.state.logins == 2


async def test_crux_403_is_not_a_relogin() -> None:
    clock = ManualClock()
    async with serve(crux.make_app(clock=clock.now), crux.LOGIN_PATH) as emu:
        auth = {"preset": "crux", **crux.DEMO_CREDENTIALS}
        async with running_proxy(settings_for({"crux": route(emu.url, **auth)}), clock) as proxy:
            assert (await proxy.get("/crux/api/v1/orders/")).status == 200
            reply = await proxy.get("/crux/forbidden/orders/")
            assert reply.status == 403
            assert reply.json() == {"detail": "You do not have permission to perform this action."}
            assert (emu.state.login_attempts, emu.state.logins) == (1, 1)
