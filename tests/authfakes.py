"""The auth tests' harness: real emulators and a real `Proxy` on 127.0.0.1:0, sharing one clock.

Nothing of ours is mocked. The emulators are the fake upstreams from `authproxy.emulators`; the only
thing added to them is `Tap`, a middleware that records request bodies and can hold login requests
until a test lets them through, so "a login is in flight" is a state a test can create and observe
instead of a race.
Time is a `ManualClock` that both the proxy and the emulators read, moved with `advance()`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from multidict import CIMultiDictProxy
from yarl import URL

from authproxy.auth.clock import Clock, ManualClock
from authproxy.auth.ports import TokenStore
from authproxy.config.load import parse_settings
from authproxy.emulators.common import EmulatorState, emulator_state
from authproxy.server.app import Proxy
from authproxy.settings import Settings

# A safety net for every network wait: a hang fails the test instead of freezing the suite.
BOUND = 10.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Tap:
    """Wraps an emulator: can hold logins, or 401 answers, until released; records other bodies."""

    def __init__(self, login_path: str) -> None:
        self.login_path = login_path
        self.held = 0
        self.bodies: list[bytes] = []
        # Statuses of the answers to non-login requests, in order.
        self.statuses: list[int] = []
        # A path prefix ("" for every path) answered 401 whatever the token: an upstream that
        # refuses everything, or one path that always refuses.
        self.refusing: str | None = None
        # While on, 401 answers are held until released: a test orders refusals and logins.
        self.holding_refusals = False
        self.refusals: list[asyncio.Future[None]] = []
        self._open = asyncio.Event()
        self._open.set()

    def hold_logins(self) -> None:
        self._open.clear()

    def release_logins(self) -> None:
        self._open.set()

    async def handle(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == self.login_path:
            self.held += 1
            try:
                await asyncio.wait_for(self._open.wait(), BOUND)
            finally:
                self.held -= 1
        else:
            self.bodies.append(await request.read())
            if self.refusing is not None and request.path.startswith(self.refusing):
                self.statuses.append(401)
                return web.json_response({"detail": "refused"}, status=401)
        response = await handler(request)
        if request.path != self.login_path:
            self.statuses.append(response.status)
        if response.status == 401 and self.holding_refusals:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.refusals.append(waiter)
            await asyncio.wait_for(waiter, BOUND)
        return response

    def release_refusals(self, count: int) -> None:
        """Let the oldest `count` held 401 answers go to the proxy, in arrival order."""
        for waiter in [w for w in self.refusals if not w.done()][:count]:
            waiter.set_result(None)

    @property
    def held_refusals(self) -> int:
        return sum(not waiter.done() for waiter in self.refusals)


@dataclass(slots=True)
class Emulator:
    """One emulator being served: its URL, live state, tap and runner."""

    url: str
    state: EmulatorState
    tap: Tap
    runner: web.AppRunner

    async def stop(self) -> None:
        """Stop serving: later connections to `url` are refused."""
        await self.runner.cleanup()


@asynccontextmanager
async def serve(app: web.Application, login_path: str) -> AsyncIterator[Emulator]:
    """Serve an emulator app on 127.0.0.1:0 until the block ends."""
    tap = Tap(login_path)

    @web.middleware
    async def tapped(request: web.Request, handler: Handler) -> web.StreamResponse:
        return await tap.handle(request, handler)

    app.middlewares.append(tapped)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        yield Emulator(f"http://127.0.0.1:{port}", emulator_state(app), tap, runner)
    finally:
        await runner.cleanup()


def settings_for(routes: Mapping[str, object], *, token_store: str = "memory") -> Settings:
    """Settings through the real config loader: `routes` as a YAML document would give them.

    Raw-socket tests name the proxy `proxy.test` in their Host header: it is an allowed name.
    """
    document = {
        "listen": "127.0.0.1:0",
        "token_store": token_store,
        "allowed_hosts": ["proxy.test"],
        "routes": dict(routes),
    }
    return parse_settings(document, source="test", environ={})


def route(upstream: str, **auth: object) -> dict[str, object]:
    return {"upstream": upstream, "auth": dict(auth)}


@dataclass(slots=True)
class Reply:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True)
class RunningProxy:
    proxy: Proxy
    base: URL
    http: ClientSession
    replies: list[Reply] = field(default_factory=list)

    async def request(self, method: str, path: str, **kwargs: Any) -> Reply:
        async with self.http.request(method, self.base.with_path(path), **kwargs) as response:
            reply = Reply(response.status, response.headers, await response.read())
        self.replies.append(reply)
        return reply

    async def get(self, path: str, **kwargs: Any) -> Reply:
        return await self.request("GET", path, **kwargs)

    async def status(self, route: str) -> dict[str, Any]:
        reply = await self.get("/-/status")
        assert reply.status == 200
        token: dict[str, Any] = reply.json()["routes"][route]["token"]
        return token


@asynccontextmanager
async def running_proxy(
    settings: Settings, clock: Clock | None = None, store: TokenStore | None = None
) -> AsyncIterator[RunningProxy]:
    """A started `Proxy` and a client session for it; both closed when the block ends."""
    proxy = Proxy(settings, clock=clock or ManualClock(), store=store)
    await proxy.start()
    # The client sends no Accept of its own unless a test passes one (cucumberstudio's default).
    http = ClientSession(timeout=ClientTimeout(total=BOUND), skip_auto_headers=("Accept",))
    try:
        yield RunningProxy(proxy, URL(proxy.urls[0]), http)
    finally:
        await http.close()
        await proxy.stop()


async def wait_until(predicate: Callable[[], bool], what: str, iterations: int = 200) -> None:
    """Let the loop run (background renewals, timers) until `predicate` holds; bounded."""
    for _ in range(iterations):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


def bearer(state: EmulatorState) -> str:
    """The Bearer token the emulator last received."""
    assert state.last_headers is not None
    scheme, _, token = state.last_headers.get("Authorization", "").partition(" ")
    assert scheme == "Bearer", scheme
    return token
