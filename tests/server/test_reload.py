"""SIGHUP: a running proxy takes a new config without dropping anything in flight, and refuses
a config that breaks a start-up rule on the address it is bound to."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from proc import ProxyProcess, start_proxy
from redis_server import running_redis

from authproxy.config.load import parse_settings
from authproxy.emulators import cosmic
from authproxy.emulators.common import EmulatorState
from authproxy.errors import ConfigError
from authproxy.server.app import Proxy

ALICE = "alice-key-0000000000000001"
BOB = "bob-key-00000000000000000002"
BOUND = 20.0


@asynccontextmanager
async def upstreams() -> AsyncIterator[
    tuple[str, str, EmulatorState, asyncio.Event, asyncio.Event]
]:
    """A cosmic emulator, and a plain upstream whose /slow waits for the test."""
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(_request: web.Request) -> web.Response:
        arrived.set()
        await release.wait()
        return web.Response(text="finished")

    async def fast(_request: web.Request) -> web.Response:
        return web.Response(text="plain")

    plain = web.Application()
    plain.router.add_get("/slow", slow)
    plain.router.add_route("*", "/{tail:.*}", fast)
    emulator = cosmic.make_app()
    runners = [
        web.AppRunner(plain, shutdown_timeout=0.5),
        web.AppRunner(emulator, shutdown_timeout=0.5),
    ]
    urls = []
    for runner in runners:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        urls.append(f"http://127.0.0.1:{runner.addresses[0][1]}")
    try:
        yield urls[0], urls[1], emulator[cosmic.STATE], arrived, release
    finally:
        release.set()
        for runner in runners:
            await runner.cleanup()


def write(path: Path, plain: str, cosmic_url: str, *, clients: str, extra_route: bool) -> None:
    creds = cosmic.DEMO_CREDENTIALS
    text = (
        "token_store: memory\n"
        "routes:\n"
        f"  plain:\n    upstream: {plain}\n"
        f"  cosmic:\n    upstream: {cosmic_url}\n"
        f"    auth: {{preset: cosmic, email: {creds['email']}, password: {creds['password']}}}\n"
    )
    if extra_route:
        text += f"  extra:\n    upstream: {plain}\n"
    path.write_text(text + f"clients:\n{clients}")


async def fetch(client: aiohttp.ClientSession, url: str, key: str) -> tuple[int, str]:
    async with client.get(url, headers={"X-Authproxy-Key": key}) as answer:
        return answer.status, await answer.text()


async def reloaded(proc: ProxyProcess, event: str) -> None:
    """Read the proxy's log until it reports `event` (the reload result)."""
    assert proc.process.stdout is not None

    async def scan() -> None:
        assert proc.process.stdout is not None
        while True:
            line = (await proc.process.stdout.readline()).decode()
            assert line, "the proxy exited"
            proc.output.append(line.rstrip("\n"))
            if line.startswith("{") and json.loads(line).get("event") == event:
                return

    await asyncio.wait_for(scan(), BOUND)


async def test_sighup_applies_routes_and_clients_keeps_tokens_and_in_flight_requests(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    async with upstreams() as (plain, cosmic_url, state, arrived, release):
        write(config, plain, cosmic_url, clients=f"  alice: {{key: {ALICE}}}\n", extra_route=True)
        proc = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        try:
            async with aiohttp.ClientSession() as client:
                assert (await fetch(client, f"{proc.url}/cosmic/v1/buckets", ALICE))[0] == 200
                assert (await fetch(client, f"{proc.url}/extra/x", ALICE))[0] == 200
                assert state.logins == 1
                in_flight = asyncio.get_running_loop().create_task(
                    fetch(client, f"{proc.url}/plain/slow", ALICE), name="in-flight"
                )
                await asyncio.wait_for(arrived.wait(), BOUND)

                # Alice is revoked, Bob added, the extra route removed; cosmic is unchanged.
                write(
                    config, plain, cosmic_url, clients=f"  bob: {{key: {BOB}}}\n", extra_route=False
                )
                proc.process.send_signal(signal.SIGHUP)
                await reloaded(proc, "config reloaded")

                release.set()
                assert await asyncio.wait_for(in_flight, BOUND) == (200, "finished")
                assert (await fetch(client, f"{proc.url}/plain/x", ALICE))[0] == 401
                assert (await fetch(client, f"{proc.url}/plain/x", BOB))[0] == 200
                assert (await fetch(client, f"{proc.url}/extra/x", BOB))[0] == 404
                assert (await fetch(client, f"{proc.url}/cosmic/v1/buckets", BOB))[0] == 200
                assert state.logins == 1  # the token survived the reload

                # An invalid config is logged and none of it applied.
                config.write_text("routes:\n  plain:\n    upstrem: nowhere\n")
                proc.process.send_signal(signal.SIGHUP)
                await reloaded(proc, "config reload failed; keeping the running config")
                assert (await fetch(client, f"{proc.url}/plain/x", BOB))[0] == 200
        finally:
            assert await proc.stop() == 0
    assert "routes.plain.upstrem" in proc.text


async def test_a_reload_that_would_open_a_public_bind_is_refused_whole(tmp_path: Path) -> None:
    """Bound to 0.0.0.0 by --listen (the container's default), a config without clients that is
    fine on its own loopback listen must not turn the running gateway into an open door."""
    config = tmp_path / "config.yaml"
    async with upstreams() as (plain, cosmic_url, _state, _arrived, _release):
        write(config, plain, cosmic_url, clients=f"  alice: {{key: {ALICE}}}\n", extra_route=False)
        proc = await start_proxy("serve", "--config", str(config), "--listen", "0.0.0.0:0")
        # Bound on every interface, but test traffic only ever goes to loopback.
        base = proc.url.replace("0.0.0.0", "127.0.0.1")
        try:
            async with aiohttp.ClientSession() as client:
                assert (await fetch(client, f"{base}/plain/x", ALICE))[0] == 200
                text = config.read_text().split("clients:")[0]
                config.write_text(text + f"  extra:\n    upstream: {plain}\n")
                proc.process.send_signal(signal.SIGHUP)
                await reloaded(proc, "config reload failed; keeping the running config")
                async with client.get(f"{base}/plain/x") as answer:
                    assert answer.status == 401
                assert (await fetch(client, f"{base}/plain/x", ALICE))[0] == 200
                assert (await fetch(client, f"{base}/extra/x", ALICE))[0] == 404
        finally:
            assert await proc.stop() == 0
    assert "listen: a non-loopback address without a 'clients' section" in proc.text


async def test_a_reload_adding_clients_to_a_plaintext_redis_store_is_refused() -> None:
    with running_redis() as redis:
        document: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "token_store": redis.url,
            "routes": {"plain": {"upstream": "http://127.0.0.1:9"}},
        }
        proxy = Proxy(parse_settings(document, source="test", environ={}))
        await proxy.start()
        try:
            # The new file names an encrypted memory store, but the store is kept until a restart:
            # clients would be served from the plain-text Redis store.
            gateway = {
                **document,
                "token_store": "memory",
                "clients": {"alice": {"key": ALICE}},
                "routes": {"other": {"upstream": "http://127.0.0.1:9"}},
            }
            with pytest.raises(ConfigError) as refused:
                proxy.reload(parse_settings(gateway, source="new.yaml", environ={}))
            assert [problem.path for problem in refused.value.problems] == ["token_store"]
            routing = proxy.dispatcher.routing
            assert [route.name for route in routing.table.routes] == ["plain"]
            assert not routing.gate.enabled
        finally:
            await proxy.stop()
