"""A fast guard against leaks under token churn: thousands of logins, refreshes and rotations.

`make soak` measures the real process for minutes or hours. This runs the same kind of churn on
five routes in a few seconds with a fake clock, and checks that nothing of the engine's own piles
up: the live objects of authproxy's types, the secret registry, the event loop's tasks. No
timing is asserted.
"""

from __future__ import annotations

import asyncio
import gc
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from authfakes import Emulator, RunningProxy, route, running_proxy, serve, settings_for

from authproxy.auth.clock import ManualClock
from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify
from authproxy.secrets import REGISTRY

LIFETIME = 6
STEP = 1.5  # clock seconds between rounds: a token is renewed every third round or so
PATHS = {
    "cosmic": "/v1/buckets",
    "coco": "/account/profile",
    "crux": "/api/v1/orders/",
    "cucumberstudio": "/api/projects",
    "emnify": "/api/v1/endpoint",
}


def apps(clock: ManualClock) -> dict[str, tuple[object, str, dict[str, str]]]:
    now = clock.now
    return {
        "cosmic": (
            cosmic.make_app(cosmic.CosmicSettings(token_lifetime=LIFETIME), clock=now),
            cosmic.LOGIN_PATH,
            dict(cosmic.DEMO_CREDENTIALS),
        ),
        "coco": (
            coco.make_app(coco.CocoSettings(token_lifetime=LIFETIME), clock=now),
            coco.LOGIN_PATH,
            {k: v for k, v in coco.DEMO_CREDENTIALS.items() if k != "api_token"},
        ),
        "crux": (
            crux.make_app(crux.CruxSettings(token_lifetime=LIFETIME), clock=now),
            crux.LOGIN_PATH,
            dict(crux.DEMO_CREDENTIALS),
        ),
        "cucumberstudio": (
            cucumberstudio.make_app(
                cucumberstudio.CucumberStudioSettings(token_lifetime=LIFETIME, rotate_tokens=True),
                clock=now,
            ),
            cucumberstudio.LOGIN_PATH,
            dict(cucumberstudio.DEMO_CREDENTIALS),
        ),
        "emnify": (
            emnify.make_app(emnify.EmnifySettings(token_lifetime=LIFETIME), clock=now),
            emnify.LOGIN_PATH,
            {k: v for k, v in emnify.DEMO_CREDENTIALS.items() if k != "application_token"},
        ),
    }


@asynccontextmanager
async def five_routes(
    clock: ManualClock,
) -> AsyncIterator[tuple[dict[str, Emulator], RunningProxy]]:
    async with AsyncExitStack() as stack:
        emulators: dict[str, Emulator] = {}
        routes: dict[str, object] = {}
        for name, (app, login_path, credentials) in apps(clock).items():
            emu = await stack.enter_async_context(serve(app, login_path))  # type: ignore[arg-type]
            emulators[name] = emu
            routes[name] = route(emu.url, preset=name, **credentials)
        proxy = await stack.enter_async_context(running_proxy(settings_for(routes), clock))
        yield emulators, proxy


async def churn(
    clock: ManualClock, emulators: dict[str, Emulator], proxy: RunningProxy, rounds: int
) -> None:
    names = list(PATHS)
    for number in range(rounds):
        replies = await asyncio.gather(
            *(proxy.get(f"/{name}{path}") for name, path in PATHS.items())
        )
        assert [reply.status for reply in replies] == [200] * len(PATHS)
        if number % 10 == 9:  # revocations, each API in turn
            emulators[names[number // 10 % len(names)]].state.revoke_all()
        clock.advance(STEP)
    # Let renewals that the last round started finish before anything is counted.
    for _ in range(100):
        if not any(manager.logging_in for manager in proxy.proxy.managers.values()):
            break
        await asyncio.sleep(0.01)


def engine_objects() -> Counter[str]:
    gc.collect()
    counts: Counter[str] = Counter()
    for thing in gc.get_objects():
        kind = type(thing)
        module = kind.__dict__.get("__module__")
        if isinstance(module, str) and module.startswith("authproxy."):
            counts[f"{module}.{kind.__qualname__}"] += 1
    return counts


async def test_churn_leaves_no_growing_pile_of_engine_objects() -> None:
    clock = ManualClock()
    async with five_routes(clock) as (emulators, proxy):
        await churn(clock, emulators, proxy, 150)  # pools, caches and loggers settle
        before = engine_objects()
        secrets_before = len(REGISTRY)
        tasks_before = len(asyncio.all_tasks())
        await churn(clock, emulators, proxy, 900)
        after = engine_objects()
        logins = sum(emu.state.logins + emu.state.refreshes for emu in emulators.values())
        rotations = emulators["cucumberstudio"].state.requests

        assert logins > 900  # thousands of cycles of renewal in all, with the rotations
        assert rotations > 1000
        grown = {
            name: (before[name], count) for name, count in after.items() if count > before[name] + 5
        }
        assert grown == {}
        assert len(REGISTRY) <= secrets_before + 10
        assert len(asyncio.all_tasks()) <= tasks_before + 10
