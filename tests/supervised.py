"""`authproxy serve --workers N` as a real subprocess, for the tests: its log read as it is
written (a full pipe would stall the workers), every wait bounded; and the upstreams it fronts,
the cosmic emulator and a plain one, running in the test's own process.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from authproxy.emulators import cosmic
from authproxy.emulators.common import EmulatorState

BOUND = 30.0
Event = dict[str, Any]


@dataclass
class Upstreams:
    cosmic_url: str
    plain_url: str
    state: EmulatorState
    slow_arrivals: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


@asynccontextmanager
async def upstreams(login_delay: float = 0.0) -> AsyncIterator[Upstreams]:
    """The cosmic emulator, and a plain upstream whose /slow waits for `release`."""
    plain = web.Application()
    emulator = cosmic.make_app()
    emulator[cosmic.STATE].login_delay = login_delay
    ups = Upstreams("", "", emulator[cosmic.STATE])

    async def slow(_request: web.Request) -> web.Response:
        ups.slow_arrivals += 1
        await ups.release.wait()
        return web.Response(text="finished")

    async def fast(_request: web.Request) -> web.Response:
        return web.Response(text="plain")

    plain.router.add_get("/slow", slow)
    plain.router.add_route("*", "/{tail:.*}", fast)
    runners = [
        web.AppRunner(emulator, access_log=None, shutdown_timeout=0.5),
        web.AppRunner(plain, access_log=None, shutdown_timeout=0.5),
    ]
    urls = []
    for runner in runners:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    ups.cosmic_url, ups.plain_url = urls
    try:
        yield ups
    finally:
        ups.release.set()
        for runner in runners:
            await runner.cleanup()


def write_config(
    path: Path, ups: Upstreams, store: str, *, extra_route: bool = False, top: str = ""
) -> Path:
    """The cosmic emulator as route `cosmic`, the plain upstream as `plain`; `top`: more
    top-level YAML (clients, limits)."""
    creds = cosmic.DEMO_CREDENTIALS
    text = (
        top + f"token_store: {store}\n"
        "routes:\n"
        f"  cosmic:\n    upstream: {ups.cosmic_url}\n"
        f"    auth: {{preset: cosmic, email: {creds['email']}, password: {creds['password']}}}\n"
        f"  plain:\n    upstream: {ups.plain_url}\n"
    )
    if extra_route:
        text += f"  extra:\n    upstream: {ups.plain_url}\n"
    path.write_text(text)
    return path


class Supervisor:
    """A running `serve --workers N`, its log parsed as it arrives."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self.events: list[Event] = []
        self.url = ""
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read(), name="log-reader")

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while raw := await self.process.stdout.readline():
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                pass
            else:
                if isinstance(event, dict):
                    self.events.append(event)
            self._changed.set()
        self._changed.set()

    def matching(self, predicate: Callable[[Event], bool], since: int = 0) -> list[Event]:
        return [event for event in self.events[since:] if predicate(event)]

    async def wait_for(
        self, what: str, predicate: Callable[[Event], bool], count: int = 1, since: int = 0
    ) -> list[Event]:
        """The first `count` events (from index `since`) that match; bounded by BOUND."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOUND
        while len(found := self.matching(predicate, since)) < count:
            if self._reader.done() or loop.time() > deadline:
                raise AssertionError(f"gave up waiting for {what}:\n" + "\n".join(self.lines))
            self._changed.clear()
            with suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - loop.time()))
        return found[:count]

    async def exit_code(self, signum: int | None = signal.SIGTERM) -> int:
        if signum is not None and self.process.returncode is None:
            self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), BOUND)
        await asyncio.wait_for(self._reader, BOUND)
        return code

    def worker_pid(self, index: int, nth: int = 1) -> int:
        listening = self.matching(lambda e: is_event(e, "worker listening", worker=index))
        return int(listening[nth - 1]["pid"])


def is_event(event: Event, name: str, **fields: object) -> bool:
    return event.get("event") == name and all(event.get(k) == v for k, v in fields.items())


def reloaded_by(index: int) -> Callable[[Event], bool]:
    return lambda event: is_event(event, "config reloaded", worker=index)


def served_by(event: Event) -> bool:
    return event.get("event") == "request" and event.get("route") is not None


@asynccontextmanager
async def supervisor(
    config: Path, workers: int = 2, listen: str = "127.0.0.1:0"
) -> AsyncIterator[Supervisor]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config),
        "--listen",
        listen,
        "--workers",
        str(workers),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = Supervisor(process)
    try:
        (started,) = await running.wait_for(
            "start-up", lambda e: is_event(e, "authproxy listening")
        )
        running.url = str(started["url"])
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
            # The workers notice their supervisor is gone (end-of-file) and stop on their own.
        await asyncio.wait_for(running._reader, BOUND)


async def get(client: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with client.get(url) as answer:
        return answer.status, await answer.text()


async def many(url: str, paths: list[str]) -> list[int]:
    """GET every path at once, each on a connection of its own (so the kernel spreads them)."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        answers = await asyncio.wait_for(
            asyncio.gather(*(get(client, f"{url}{path}") for path in paths)), BOUND
        )
    return [status for status, _ in answers]
