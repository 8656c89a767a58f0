"""Refusals judged by evidence, and lifetimes learned from it: real emulators, a shared ManualClock.

A token the upstream accepted before and now refuses is stale, however soon after a login that
happens. A token refused on its first use is suspect: the upstream's answer reaches the client and
further refusals back off. An API that never says how long its tokens live has it learned.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from aiohttp import ClientSession
from authfakes import Emulator, RunningProxy, route, running_proxy, serve, settings_for, wait_until

from authproxy.auth.clock import ManualClock
from authproxy.auth.lifetimes import LifetimeLearner
from authproxy.auth.refusals import RefusalEvidence
from authproxy.emulators import cosmic, crux, cucumberstudio
from authproxy.server.app import Proxy

COSMIC = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
CRUX = {"preset": "crux", **crux.DEMO_CREDENTIALS}


@asynccontextmanager
async def cosmic_stack(
    lifetime: int = 3600,
) -> AsyncIterator[tuple[ManualClock, Emulator, RunningProxy]]:
    clock = ManualClock()
    app = cosmic.make_app(cosmic.CosmicSettings(token_lifetime=lifetime), clock=clock.now)
    async with (
        serve(app, cosmic.LOGIN_PATH) as emu,
        running_proxy(settings_for({"cosmic": route(emu.url, **COSMIC)}), clock) as proxy,
    ):
        assert (await proxy.get("/cosmic/warm-up")).status == 200
        yield clock, emu, proxy


@asynccontextmanager
async def crux_stack(
    lifetime: float, *, reuse_live_token: bool
) -> AsyncIterator[tuple[ManualClock, Emulator, RunningProxy]]:
    clock = ManualClock()
    conf = crux.CruxSettings(token_lifetime=lifetime, reuse_live_token=reuse_live_token)
    async with (
        serve(crux.make_app(conf, clock=clock.now), crux.LOGIN_PATH) as emu,
        running_proxy(settings_for({"crux": route(emu.url, **CRUX)}), clock) as proxy,
    ):
        yield clock, emu, proxy


# ---- stale tokens ------------------------------------------------------------------------------


async def test_revocations_back_to_back_never_reach_the_client() -> None:
    async with cosmic_stack() as (_clock, emu, proxy):
        for i in range(4):
            emu.state.revoke_all()  # no time passes: each new token dies moments after its login
            assert (await proxy.get(f"/cosmic/after-revocation/{i}")).status == 200
        assert emu.state.logins == 5


async def test_a_token_revoked_between_its_login_and_its_first_use_is_replaced() -> None:
    async with cosmic_stack(lifetime=10) as (clock, emu, proxy):
        clock.advance(8.5)  # past renew_at: this request starts a background renewal
        assert (await proxy.get("/cosmic/stale")).status == 200
        await wait_until(lambda: emu.state.logins == 2, "the background renewal")
        await wait_until(lambda: proxy.proxy.managers["cosmic"].usable(clock.now()), "install")
        emu.state.revoke_all()  # the renewed token has not been used yet
        assert (await proxy.get("/cosmic/first-use")).status == 200
        assert emu.state.logins == 3


# ---- suspect tokens ----------------------------------------------------------------------------


async def test_an_upstream_refusing_every_token_never_costs_a_login_per_request() -> None:
    async with cosmic_stack() as (clock, emu, proxy):
        emu.tap.refusing = ""
        assert (await proxy.get("/cosmic/one")).status == 401  # the upstream's own answer
        logins = emu.state.login_attempts
        # The warm-up login; the stale token's replacement, refused on its first use; one more
        # (a revocation can land between a login and its first use), refused too: then a hold.
        assert logins == 3
        for i in range(20):
            assert (await proxy.get(f"/cosmic/held/{i}")).status == 401
        assert emu.state.login_attempts == logins
        # The backoff doubles from 1 s: over a minute of refusals, a handful of logins.
        for _ in range(60):
            clock.advance(1)
            assert (await proxy.get("/cosmic/minute")).status == 401
        assert emu.state.login_attempts <= logins + 6
        # The upstream recovers: once the hold ends, one login and a replay settle everything.
        emu.tap.refusing = None
        clock.advance(300)
        assert (await proxy.get("/cosmic/recovered")).status == 200
        emu.state.revoke_all()
        assert (await proxy.get("/cosmic/revoked-again")).status == 200


async def test_a_path_that_always_refuses_cannot_force_logins() -> None:
    """A client can make a 401 on purpose; it must not turn into a login every few seconds."""
    async with cosmic_stack() as (clock, emu, proxy):
        emu.tap.refusing = "/always-401"
        for _ in range(120):
            assert (await proxy.get("/cosmic/always-401")).status == 401
            assert (await proxy.get("/cosmic/fine")).status == 200
            clock.advance(1)
        # Exponential from 1 s: the logins of two minutes of attack grow with its logarithm.
        assert emu.state.logins <= 1 + 8


async def test_a_refused_streamed_body_is_not_replayed_and_logs_in_once() -> None:
    async with cosmic_stack() as (_clock, emu, proxy):
        emu.state.revoke_all()

        async def chunks() -> AsyncIterator[bytes]:
            yield b"not replayable"

        assert (await proxy.request("POST", "/cosmic/upload", data=chunks())).status == 401
        assert (await proxy.get("/cosmic/next")).status == 200
        assert emu.state.logins == 2


# ---- learned lifetimes ---------------------------------------------------------------------------


async def steady_traffic(
    clock: ManualClock, proxy: RunningProxy, seconds: float, step: float = 0.25
) -> list[int]:
    """One request every `step` seconds of the clock; the statuses the client got."""
    statuses = []
    for _ in range(round(seconds / step)):
        statuses.append((await proxy.get("/crux/api/v1/orders/")).status)
        # A renewal started by that request finishes before time moves on.
        await wait_until(lambda: not proxy.proxy.managers["crux"].logging_in, "renewal")
        clock.advance(step)
    return statuses


async def test_an_unannounced_lifetime_is_learned_and_then_met_by_no_401() -> None:
    async with crux_stack(5, reuse_live_token=False) as (clock, emu, proxy):
        statuses = await steady_traffic(clock, proxy, 11)  # two lifetimes, each ending in a 401
        assert set(statuses) == {200}
        assert emu.tap.statuses.count(401) == 2
        token = await proxy.status("crux")
        assert 5 <= token["learned_lifetime_seconds"] <= 5.5
        seen = len(emu.tap.statuses)
        logins = emu.state.logins
        statuses = await steady_traffic(clock, proxy, 30)
        assert set(statuses) == {200}
        assert 401 not in emu.tap.statuses[seen:]  # renewed ahead of every death
        assert emu.state.logins - logins <= 30 / (0.75 * 5) + 1


async def test_a_streamed_body_succeeds_once_the_lifetime_is_learned() -> None:
    async with crux_stack(5, reuse_live_token=False) as (clock, emu, proxy):
        await steady_traffic(clock, proxy, 11)
        seen = len(emu.tap.statuses)
        for _ in range(12):

            async def body() -> AsyncIterator[bytes]:
                yield b"x" * 1024

            reply = await proxy.request("POST", "/crux/api/v1/upload/", data=body())
            assert reply.status == 200
            await steady_traffic(clock, proxy, 1)
        assert 401 not in emu.tap.statuses[seen:]


async def test_a_token_outliving_the_learned_lifetime_lifts_it() -> None:
    async with crux_stack(5, reuse_live_token=False) as (clock, emu, proxy):
        await steady_traffic(clock, proxy, 11)
        assert (await proxy.status("crux"))["learned_lifetime_seconds"] is not None
        grant = proxy.proxy.managers["crux"].current_grant
        assert grant is not None
        # The server's setting changes: the token held now lives for an hour. The route idles
        # well past the learned lifetime, and its next request is still accepted.
        emu.state.tokens.add(grant.values["token"], 3600)
        clock.advance(20)
        assert (await proxy.get("/crux/api/v1/orders/")).status == 200
        assert emu.tap.statuses[-1] == 200
        assert (await proxy.status("crux"))["learned_lifetime_seconds"] is None


async def test_a_server_that_reissues_live_tokens_learns_without_a_login_storm() -> None:
    """Django REST framework's get_or_create answers a login with the live token: renewing early
    cannot help there, so the renewal waits for the learned death."""
    async with crux_stack(5, reuse_live_token=True) as (clock, emu, proxy):
        statuses = await steady_traffic(clock, proxy, 60)
        assert set(statuses) == {200}
        # About one login per lifetime, never one per request.
        assert emu.state.logins <= 60 / 5 + 3
        assert emu.tap.statuses.count(401) <= 60 / 5 + 1


# ---- the learner on its own --------------------------------------------------------------------


def test_two_similar_deaths_in_a_row_teach_the_shorter_age() -> None:
    learner = LifetimeLearner()
    learner.died(6.2)
    assert learner.learned is None
    learner.died(6.0)
    assert learner.learned == 6.0


def test_deaths_apart_or_dissimilar_teach_nothing() -> None:
    learner = LifetimeLearner()
    learner.died(6.0)
    learner.replaced()  # a renewal in between: the next death is not one in a row
    learner.died(6.1)
    assert learner.learned is None
    learner.died(2.0)  # a revocation at a random age
    assert learner.learned is None


def test_a_longer_life_drops_what_was_learned() -> None:
    learner = LifetimeLearner()
    learner.died(6.0)
    learner.died(6.0)
    learner.accepted(5.9)
    assert learner.learned == 6.0
    learner.accepted(6.5)
    assert learner.learned is None


# ---- a login that never answers ------------------------------------------------------------------


async def test_a_hanging_login_answers_every_waiting_request_with_504_at_its_deadline() -> None:
    clock = ManualClock()
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        emu.tap.hold_logins()  # the login endpoint takes the request and never answers
        auth = {**COSMIC, "timeout": 0.3}
        async with running_proxy(settings_for({"cosmic": route(emu.url, **auth)}), clock) as proxy:
            replies = await asyncio.gather(*(proxy.get(f"/cosmic/wait/{i}") for i in range(5)))
            assert [reply.status for reply in replies] == [504] * 5
            problem = replies[0].json()
            assert problem["type"] == "urn:authproxy:problem:login-timeout"
            assert problem["route"] == "cosmic"
            assert emu.state.login_attempts == 0  # held at the tap, never answered
            # The transient backoff holds further requests off without another login.
            assert (await proxy.get("/cosmic/again")).status == 504
            assert emu.tap.held <= 1
            token = await proxy.status("cosmic")
            assert token["state"] == "failed"
            emu.tap.release_logins()
            clock.advance(1.5)
            assert (await proxy.get("/cosmic/later")).status == 200


# ---- a rotating upstream and processes that share a store ----------------------------------------


async def test_workers_sharing_a_store_keep_their_own_session_once_the_upstream_rotates(
    tmp_path: Path,
) -> None:
    """devise_token_auth rotating on every answer refuses any copy but the latest two: workers
    that shared one session would refuse each other. Each keeps a session of its own instead."""
    clock = ManualClock()
    conf = cucumberstudio.CucumberStudioSettings(rotate_tokens=True)
    app = cucumberstudio.make_app(conf, clock=clock.now)
    async with serve(app, cucumberstudio.LOGIN_PATH) as emu:
        auth = {"preset": "cucumberstudio", **cucumberstudio.DEMO_CREDENTIALS}
        store = str(tmp_path / "tokens.json")
        settings = settings_for({"cs": route(emu.url, **auth)}, token_store=store)
        # Two workers of one `serve --workers 2`: in one process, they still only share the
        # file (flock is per open file, so they lock each other out as processes would).
        workers = [Proxy(settings, clock=clock, workers=2) for _ in range(2)]
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(ClientSession())
            bases = []
            for worker in workers:
                await worker.start()
                stack.push_async_callback(worker.stop)
                bases.append(worker.urls[0])
            order = [0, 1, 0, 0, 1, 1, 1, 0] * 25
            for number, index in enumerate(order):
                async with http.get(f"{bases[index]}/cs/api/projects/{number}") as reply:
                    assert reply.status == 200
                clock.advance(0.5)  # past devise's 5-second batch window now and then
            assert emu.state.logins <= 2  # the shared first sign-in, then one of its own
            emu.state.revoke_all()
            for number, index in enumerate(order[:8]):
                async with http.get(f"{bases[index]}/cs/api/after/{number}") as reply:
                    assert reply.status == 200
            assert emu.state.logins <= 4


# ---- the refusal rules on their own ------------------------------------------------------------


def test_a_first_use_refusal_gets_one_retry_and_a_working_token_reopens_it() -> None:
    evidence = RefusalEvidence("r")
    evidence.installed(fresh=True)
    assert evidence.ends(now=0.0)  # refused on its first use: one more login and a replay
    evidence.installed(fresh=True)
    evidence.accepted()  # that replay never came back, but the new token works
    evidence.installed(fresh=True)
    assert evidence.ends(now=1.0)  # so the next first-use refusal gets its retry again
    assert not evidence.holding(1.0)


def test_a_path_that_always_refuses_keeps_its_backoff_growing_whatever_else_works() -> None:
    evidence = RefusalEvidence("r")
    evidence.installed(fresh=False)
    waits = []
    now = 0.0
    for episode in range(5):
        assert evidence.ends(now)  # the token worked elsewhere: stale, log in and replay
        evidence.installed(fresh=True)
        evidence.replay_refused(current=True, now=now)  # the replay is refused too
        if episode == 0:
            # The first fresh token refused in a while gets one more login and replay.
            assert not evidence.holding(now)
            assert evidence.ends(now)
            evidence.installed(fresh=True)
            evidence.replay_refused(current=True, now=now)
        evidence.accepted()  # other paths keep working with the new token
        assert evidence.holding(now)
        start = now
        while evidence.holding(now):
            now += 0.5
        waits.append(now - start)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_a_replay_refused_with_a_token_from_the_store_is_stale_not_suspect() -> None:
    """A revocation can kill the token another process just shared as well: that token is
    stale, so the request may be replayed once more after a login, with no backoff."""
    evidence = RefusalEvidence("r")
    evidence.installed(fresh=False)  # taken from the shared store
    evidence.replay_refused(current=True, now=0.0)
    assert not evidence.holding(0.0)
    assert evidence.ends(0.0)
