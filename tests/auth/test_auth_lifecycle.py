"""A token's life through the proxy: renewal, expiry, failures, backoff, refresh, rotation, status.

One `ManualClock` drives the proxy and the emulator: lifetimes pass with `advance()`, never a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from authfakes import (
    Emulator,
    Reply,
    RunningProxy,
    bearer,
    route,
    running_proxy,
    serve,
    settings_for,
    wait_until,
)

from authproxy.auth.clock import ManualClock
from authproxy.emulators import cosmic, cucumberstudio, emnify
from authproxy.emulators.emnify import EmnifyState
from authproxy.problems import PROBLEM_CONTENT_TYPE

COSMIC = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
EMNIFY = {"preset": "emnify", "username": "demo@example.com", "password": "demo-password"}


@asynccontextmanager
async def stack(
    make: Callable[[ManualClock], web.Application], login_path: str, **auth: object
) -> AsyncIterator[tuple[ManualClock, Emulator, RunningProxy]]:
    """One emulator and a proxy with one route `up` to it, on a shared ManualClock."""
    clock = ManualClock()
    async with (
        serve(make(clock), login_path) as emu,
        running_proxy(settings_for({"up": route(emu.url, **auth)}), clock) as proxy,
    ):
        yield clock, emu, proxy


def cosmic_app(lifetime: int = 3600) -> Callable[[ManualClock], web.Application]:
    return lambda clock: cosmic.make_app(
        cosmic.CosmicSettings(token_lifetime=lifetime), clock=clock.now
    )


def emnify_app(lifetime: int = 100) -> Callable[[ManualClock], web.Application]:
    return lambda clock: emnify.make_app(
        emnify.EmnifySettings(token_lifetime=lifetime), clock=clock.now
    )


def assert_login_problem(reply: Reply, upstream_status: int, *secrets: str) -> dict[str, Any]:
    assert reply.status == 502
    assert reply.headers["Content-Type"] == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = reply.json()
    assert problem["route"] == "up"
    assert problem["upstream_status"] == upstream_status
    text = reply.body.decode()
    assert not [secret for secret in secrets if secret in text]
    return problem


# ---- renewal -----------------------------------------------------------------------------------


async def test_stale_token_is_served_while_renewal_runs_in_background() -> None:
    async with stack(cosmic_app(lifetime=4), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        assert (await proxy.get("/up/one")).status == 200
        first = bearer(emu.state)
        emu.tap.hold_logins()
        clock.advance(3.3)  # past 80 % (plus jitter) of 4 s, well before expiry
        request = asyncio.gather(proxy.get("/up/two"))
        # Answered while the renewal login is still held at the emulator: it did not wait.
        await wait_until(request.done, "the stale-token request to finish")
        assert request.result()[0].status == 200
        assert bearer(emu.state) == first
        assert emu.tap.held == 1
        assert emu.state.logins == 1
        emu.tap.release_logins()
        await wait_until(lambda: emu.state.logins == 2, "the background renewal")
        assert (await proxy.get("/up/three")).status == 200
        assert bearer(emu.state) != first
        assert emu.state.logins == 2


async def test_used_route_renews_on_its_timer_without_a_request() -> None:
    async with stack(cosmic_app(lifetime=10), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        assert (await proxy.get("/up/one")).status == 200
        assert (await proxy.get("/up/two")).status == 200  # used since the login
        clock.advance(8.5)
        await wait_until(lambda: emu.state.logins == 2, "the timer's renewal")


async def test_expired_token_is_never_injected_when_login_fails() -> None:
    async with stack(cosmic_app(lifetime=4), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        assert (await proxy.get("/up/one")).status == 200
        seen = emu.state.requests
        emu.state.fail_logins_with = 503
        clock.advance(4.5)
        reply = await proxy.get("/up/two")
        assert_login_problem(reply, 503)
        assert emu.state.requests == seen  # the stale token never went upstream


# ---- login failures ----------------------------------------------------------------------------


async def test_rejected_login_is_not_retried_until_relogin_after_rejection() -> None:
    wrong = "wrong-password-8d7c"
    auth = {**COSMIC, "password": wrong}
    async with stack(cosmic_app(), cosmic.LOGIN_PATH, **auth) as (clock, emu, proxy):
        first = await proxy.get("/up/x")
        problem = assert_login_problem(first, 401, wrong, cosmic.DEMO_CREDENTIALS["email"])
        assert "401" in problem["detail"]
        for i in range(20):
            assert_login_problem(await proxy.get(f"/up/again/{i}"), 401, wrong)
        assert emu.state.login_attempts == 1
        clock.advance(299)
        assert_login_problem(await proxy.get("/up/later"), 401, wrong)
        assert emu.state.login_attempts == 1
        clock.advance(1)
        assert_login_problem(await proxy.get("/up/retry"), 401, wrong)
        assert emu.state.login_attempts == 2


async def test_emnify_wrong_password_never_locks_the_account() -> None:
    auth = {**EMNIFY, "password": "not-the-password"}
    async with stack(emnify_app(), emnify.LOGIN_PATH, **auth) as (clock, emu, proxy):
        state = emu.state
        assert isinstance(state, EmnifyState)
        for i in range(30):
            assert (await proxy.get(f"/up/api/v1/endpoint/{i}")).status == 502
            clock.advance(9)  # 270 s in all: within relogin_after_rejection
        assert state.login_attempts == 1
        assert state.failures == {"demo@example.com": 1}
        assert state.locked_until == {}


async def test_transient_login_failure_backs_off_exponentially() -> None:
    async with stack(cosmic_app(), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        emu.state.fail_logins_with = 503
        assert_login_problem(await proxy.get("/up/x"), 503)
        assert emu.state.login_attempts == 1
        for attempts, delay in enumerate((1.0, 2.0, 4.0, 8.0), start=2):
            clock.advance(delay - 0.5)
            assert_login_problem(await proxy.get("/up/early"), 503)
            assert emu.state.login_attempts == attempts - 1
            clock.advance(0.5)
            assert_login_problem(await proxy.get("/up/due"), 503)
            assert emu.state.login_attempts == attempts
        emu.state.fail_logins_with = None
        clock.advance(16)
        assert (await proxy.get("/up/recovered")).status == 200
        # A success resets the backoff: the next outage starts from 1 s again.
        emu.state.revoke_all()
        emu.state.fail_logins_with = 503
        assert (await proxy.get("/up/outage")).status == 502
        attempts = emu.state.login_attempts
        clock.advance(1)
        assert (await proxy.get("/up/outage-retry")).status == 502
        assert emu.state.login_attempts == attempts + 1


async def test_refused_connection_backs_off_exponentially() -> None:
    async with stack(cosmic_app(), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        await emu.stop()  # nothing listens there any more: connection refused

        async def failures() -> int:
            failed: int = (await proxy.status("up"))["failures"]
            return failed

        reply = await proxy.get("/up/x")
        assert reply.status == 502
        assert "refused" in reply.json()["detail"]
        assert await failures() == 1
        for count, delay in enumerate((1.0, 2.0, 4.0), start=2):
            clock.advance(delay - 0.5)
            assert (await proxy.get("/up/early")).status == 502
            assert await failures() == count - 1
            clock.advance(0.5)
            assert (await proxy.get("/up/due")).status == 502
            assert await failures() == count


# ---- emnify refresh ----------------------------------------------------------------------------


async def test_emnify_renews_with_refresh_token_then_falls_back_to_password() -> None:
    async with stack(emnify_app(lifetime=100), emnify.LOGIN_PATH, **EMNIFY) as (clock, emu, proxy):
        state = emu.state
        assert isinstance(state, EmnifyState)
        assert (await proxy.get("/up/a")).status == 200
        (refresh_token,) = state.refresh_tokens
        first = bearer(state)

        clock.advance(85)
        assert (await proxy.get("/up/b")).status == 200
        await wait_until(lambda: state.refreshes == 1, "the first refresh")
        assert state.logins == 1
        assert (await proxy.get("/up/c")).status == 200
        assert bearer(state) != first
        grant = proxy.proxy.managers["up"].current_grant
        assert grant is not None
        assert grant.values["refresh_token"] == refresh_token  # kept: emnify sends no new one

        clock.advance(85)
        assert (await proxy.get("/up/d")).status == 200
        await wait_until(lambda: state.refreshes == 2, "the second refresh, same refresh token")
        assert state.logins == 1

        state.revoke_refresh_tokens()
        clock.advance(85)
        assert (await proxy.get("/up/e")).status == 200
        await wait_until(lambda: state.logins == 2, "the password login after a refused refresh")
        assert state.refreshes == 2
        assert (await proxy.get("/up/f")).status == 200
        token = await proxy.status("up")
        assert token["refreshes"] >= 2
        assert token["state"] == "valid"


# ---- CucumberStudio rotation -------------------------------------------------------------------


def devise_app(*, rotate: bool) -> Callable[[ManualClock], web.Application]:
    settings = cucumberstudio.CucumberStudioSettings(rotate_tokens=rotate)
    return lambda clock: cucumberstudio.make_app(settings, clock=clock.now)


CUCUMBER = {"preset": "cucumberstudio", **cucumberstudio.DEMO_CREDENTIALS}


async def test_cucumberstudio_adopts_rotated_tokens() -> None:
    async with stack(devise_app(rotate=True), cucumberstudio.LOGIN_PATH, **CUCUMBER) as (
        clock,
        emu,
        proxy,
    ):
        sent: list[str] = []
        for i in range(20):
            reply = await proxy.get(f"/up/api/projects/{i}")
            assert reply.status == 200, (i, reply.body)
            assert emu.state.last_headers is not None
            sent.append(emu.state.last_headers["access-token"])
            # Past devise's batch window: only the newest token is accepted from here on.
            clock.advance(6)
        assert emu.state.logins == 1
        assert len(set(sent)) == 20  # a new token adopted from every answer


async def test_cucumberstudio_ignores_blank_access_token() -> None:
    async with stack(devise_app(rotate=False), cucumberstudio.LOGIN_PATH, **CUCUMBER) as (
        clock,
        emu,
        proxy,
    ):
        sent: set[str] = set()
        for i in range(10):
            assert (await proxy.get(f"/up/api/projects/{i}")).status == 200
            assert emu.state.last_headers is not None
            sent.add(emu.state.last_headers["access-token"])
            clock.advance(6)
        assert emu.state.logins == 1
        assert len(sent) == 1
        assert "" not in sent


# ---- /-/status, /-/ready, warm -----------------------------------------------------------------


async def ready(proxy: RunningProxy) -> tuple[int, dict[str, Any]]:
    reply = await proxy.get("/-/ready")
    document: dict[str, Any] = reply.json()
    return reply.status, document


async def test_status_shows_token_states_and_ready_follows_logins() -> None:
    async with stack(cosmic_app(lifetime=100), cosmic.LOGIN_PATH, **COSMIC) as (clock, emu, proxy):
        token = await proxy.status("up")
        assert (token["state"], token["logins"], token["expires_at"]) == ("none", 0, None)
        assert (await ready(proxy))[0] == 200  # never asked is not failing

        assert (await proxy.get("/up/x")).status == 200
        token = await proxy.status("up")
        assert token["state"] == "valid"
        assert token["expires_at"] == "2023-11-14T22:15:00Z"  # the JWT's exp: start + 100 s
        assert token["last_login"]["outcome"] == "ok"
        assert token["last_login"]["at"] == "2023-11-14T22:13:20Z"
        assert (token["logins"], token["refreshes"], token["failures"]) == (1, 0, 0)

        clock.advance(85)  # idle route: no renewal, just due
        assert (await proxy.status("up"))["state"] == "expiring"
        clock.advance(14)  # 1 s before exp: inside the leeway, so no longer injected
        assert (await proxy.status("up"))["state"] == "expired"
        clock.advance(2)
        assert (await proxy.status("up"))["state"] == "expired"
        assert (await ready(proxy))[0] == 200  # expired but not failing: a request logs in

        emu.state.fail_logins_with = 503
        assert (await proxy.get("/up/y")).status == 502
        token = await proxy.status("up")
        assert (token["state"], token["last_login"]["outcome"]) == ("failed", "unavailable")
        assert token["failures"] == 1
        status, document = await ready(proxy)
        assert status == 503
        assert list(document["routes"]) == ["up"]

        emu.state.fail_logins_with = None
        clock.advance(1)
        assert (await proxy.get("/up/z")).status == 200
        assert (await ready(proxy))[0] == 200
        assert (await proxy.status("up"))["state"] == "valid"


async def test_ready_is_503_while_first_login_is_rejected() -> None:
    auth = {**COSMIC, "password": "nope-nope"}
    async with stack(cosmic_app(), cosmic.LOGIN_PATH, **auth) as (_clock, _emu, proxy):
        assert (await proxy.get("/up/x")).status == 502
        status, document = await ready(proxy)
        assert status == 503
        assert "401" in document["routes"]["up"]
        assert (await proxy.status("up"))["last_login"]["outcome"] == "rejected"


async def test_warm_route_logs_in_at_start() -> None:
    async with stack(cosmic_app(), cosmic.LOGIN_PATH, **COSMIC, warm=True) as (_c, emu, proxy):
        await wait_until(lambda: emu.state.logins == 1, "the warm-up login")
        assert emu.state.requests == 0
        assert (await proxy.status("up"))["state"] == "valid"
        assert (await proxy.get("/up/x")).status == 200
        assert emu.state.logins == 1
