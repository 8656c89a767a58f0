"""All five emulators on real sockets, for `authproxy demo` and end-to-end tests.

    stack = await start_emulators()
    stack["emnify"].url            # "http://127.0.0.1:<port>"
    stack["emnify"].demo           # what it declared for the demo (login fields, a sample path)
    await stack.close()

Access logging is off: the request lines and headers it could print would carry tokens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from aiohttp import web
from yarl import URL

from authproxy.emulators import DEMOS
from authproxy.emulators.common import Clock, DemoApi, EmulatorState, emulator_state


@dataclass(frozen=True, slots=True)
class RunningEmulator:
    """One emulator being served: its base URL, live state and what it declared for the demo."""

    name: str
    url: str
    state: EmulatorState
    demo: DemoApi


class EmulatorStack:
    """The running emulators by name; `close()` (or `async with`) stops them all."""

    def __init__(self) -> None:
        self._emulators: dict[str, RunningEmulator] = {}
        self._runners: list[web.AppRunner] = []

    def __getitem__(self, name: str) -> RunningEmulator:
        return self._emulators[name]

    def __iter__(self) -> Iterator[RunningEmulator]:
        return iter(self._emulators.values())

    @property
    def emulators(self) -> Mapping[str, RunningEmulator]:
        return MappingProxyType(self._emulators)

    async def serve(
        self, demo: DemoApi, app: web.Application, host: str, port: int = 0
    ) -> RunningEmulator:
        """Serve `app` on `port` of `host` (0: a free one) and list it under the demo's name."""
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runners.append(runner)  # before start(): a failed bind must still be cleaned up
        await web.TCPSite(runner, host, port).start()
        port = runner.addresses[0][1]
        url = str(URL.build(scheme="http", host=host, port=port))
        running = RunningEmulator(demo.name, url, emulator_state(app), demo)
        self._emulators[demo.name] = running
        return running

    async def close(self) -> None:
        """Stop every emulator; safe to call twice."""
        runners, self._runners = self._runners, []
        for runner in reversed(runners):
            await runner.cleanup()

    async def __aenter__(self) -> EmulatorStack:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def start_emulators(
    host: str = "127.0.0.1", *, clock: Clock = time.time, port_base: int | None = None
) -> EmulatorStack:
    """Serve every emulator of `DEMOS` (demo settings) on `host`, each on its own free port, or
    with `port_base` on fixed ones: the first on `port_base`, the next on the port after, ..."""
    stack = EmulatorStack()
    try:
        for index, demo in enumerate(DEMOS):
            port = 0 if port_base is None else port_base + index
            await stack.serve(demo, demo.make_app(clock), host, port)
    except BaseException:
        # Stop the ones already running (a port taken, a cancelled demo) before propagating.
        await stack.close()
        raise
    return stack
