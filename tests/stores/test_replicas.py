"""Several proxy processes, one Redis, one upstream account: one login, whatever happens.

Real `authproxy serve` subprocesses share a real `redis-server`; the upstream is an emulator in
this process, so its login counter is the ground truth.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from proc import ProxyProcess, run_cli, start_proxy
from redis_server import RedisServer, running_redis

from authproxy.emulators import cosmic
from authproxy.emulators.common import EmulatorState

BOUND = 30.0


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@asynccontextmanager
async def upstream(login_delay: float = 0.0) -> AsyncIterator[tuple[str, EmulatorState]]:
    app = cosmic.make_app()
    state = app[cosmic.STATE]
    state.login_delay = login_delay
    # A short grace: a login held open on purpose must not delay the test at shutdown.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", state
    finally:
        await runner.cleanup()


def config(tmp_path: Path, name: str, upstream_url: str, redis_url: str, key: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    credentials = cosmic.DEMO_CREDENTIALS
    path.write_text(
        f"token_store: {redis_url}\n"
        f"token_store_key: {key}\n"
        "routes:\n"
        "  cosmic:\n"
        f"    upstream: {upstream_url}\n"
        f"    auth: {{preset: cosmic, email: {credentials['email']}, "
        f"password: {credentials['password']}}}\n"
    )
    return path


async def replicas(
    tmp_path: Path, count: int, upstream_url: str, redis_url: str
) -> list[ProxyProcess]:
    key = Fernet.generate_key().decode()
    return list(
        await asyncio.gather(
            *(
                start_proxy(
                    "serve",
                    "--config",
                    str(config(tmp_path, f"r{i}", upstream_url, redis_url, key)),
                    "--listen",
                    "127.0.0.1:0",
                )
                for i in range(count)
            )
        )
    )


async def get_status(client: aiohttp.ClientSession, url: str) -> int:
    async with client.get(url) as answer:
        await answer.read()
        return answer.status


async def test_two_replicas_answer_a_hundred_first_requests_with_one_login(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with upstream(login_delay=0.5) as (url, state):
        procs = await replicas(tmp_path, 2, url, redis.url)
        try:
            async with aiohttp.ClientSession() as client:
                statuses = await asyncio.wait_for(
                    asyncio.gather(
                        *(
                            get_status(client, f"{procs[i % 2].url}/cosmic/v1/buckets/{i}")
                            for i in range(100)
                        )
                    ),
                    BOUND,
                )
            assert statuses == [200] * 100
            assert state.login_attempts == 1
        finally:
            for proc in procs:
                assert await proc.stop() == 0
    # Tokens at rest are encrypted: the raw value in Redis is neither JSON nor the token.
    import redis as redis_client

    raw = redis_client.Redis.from_url(redis.url)
    try:
        keys = [k for k in raw.keys("authproxy:token:*")]
        assert keys
        stored = raw.hget(keys[0], "grant")
        assert isinstance(stored, bytes)
        assert not stored.startswith(b"{")
        assert b"eyJ" not in stored
    finally:
        raw.close()


async def test_killing_the_replica_that_holds_the_login_lets_another_recover(
    tmp_path: Path, redis: RedisServer
) -> None:
    # Logins hang until released: the first replica takes the lock and is killed mid-login.
    async with upstream(login_delay=60.0) as (url, state):
        holder, survivor = await replicas(tmp_path, 2, url, redis.url)
        try:
            async with aiohttp.ClientSession() as client:
                first = asyncio.get_running_loop().create_task(
                    get_status(client, f"{holder.url}/cosmic/a"), name="holder-request"
                )
                for _ in range(500):
                    if state.login_attempts >= 1:
                        break
                    await asyncio.sleep(0.01)
                assert state.login_attempts == 1
                holder.process.kill()
                await holder.process.wait()
                with pytest.raises(aiohttp.ClientError):
                    await first
                state.login_delay = 0.0
                started = time.monotonic()
                assert (
                    await asyncio.wait_for(get_status(client, f"{survivor.url}/cosmic/b"), BOUND)
                    == 200
                )
                recovery = time.monotonic() - started
                print(f"recovery after killing the lock holder: {recovery:.2f} s")
            # The survivor waited for the dead holder's lease (6 s at most), then logged in once.
            assert state.login_attempts == 2
            assert recovery < 15
        finally:
            assert await survivor.stop() == 0


async def test_with_redis_down_requests_still_succeed_and_the_token_is_shared_later(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with upstream() as (url, state):
        (proc,) = await replicas(tmp_path, 1, url, redis.url)
        try:
            redis.stop()
            async with aiohttp.ClientSession() as client:
                assert await get_status(client, f"{proc.url}/cosmic/a") == 200
                assert state.logins == 1
                redis.start()
                # The held token is published once the store answers again.
                import redis as redis_client

                raw = redis_client.Redis.from_url(redis.url)
                try:
                    for _ in range(100):
                        if raw.keys("authproxy:token:*"):
                            break
                        await asyncio.sleep(0.1)
                    assert raw.keys("authproxy:token:*")
                finally:
                    raw.close()
                assert await get_status(client, f"{proc.url}/cosmic/b") == 200
            assert state.logins == 1
        finally:
            assert await proc.stop(signal.SIGTERM) == 0
        assert "shared token store unreachable" in proc.text
        events = [json.loads(line) for line in proc.output if line.startswith("{")]
        assert any(e.get("event") == "token shared again after the store came back" for e in events)


async def test_status_without_a_running_proxy_reads_the_redis_store(
    tmp_path: Path, redis: RedisServer
) -> None:
    """`authproxy status` chooses the store exactly as `serve` does: with `token_store: redis://`
    and no proxy answering, it reads the tokens the replicas left in Redis."""
    async with upstream() as (url, _state):
        (proc,) = await replicas(tmp_path, 1, url, redis.url)
        try:
            async with aiohttp.ClientSession() as client:
                assert await get_status(client, f"{proc.url}/cosmic/v1/buckets") == 200
        finally:
            assert await proc.stop() == 0
    code, out, err = await run_cli("status", "--config", str(tmp_path / "r0.yaml"), "--json")
    assert code == 0, err
    document = json.loads(out)
    assert document["source"] == f"token store (redis 127.0.0.1:{redis.port})"
    assert document["routes"]["cosmic"]["token"]["state"] == "valid"


async def test_a_replica_that_never_logged_in_shows_the_shared_token(
    tmp_path: Path, redis: RedisServer
) -> None:
    """`/-/status` and `/-/metrics` describe the token in Redis, not the answering replica's
    copy: the replica that served nothing still shows it valid, from the store."""
    async with upstream() as (url, state):
        served, idle = await replicas(tmp_path, 2, url, redis.url)
        try:
            async with aiohttp.ClientSession() as client:
                assert await get_status(client, f"{served.url}/cosmic/v1/buckets") == 200
                async with client.get(f"{idle.url}/-/status") as answer:
                    document = await answer.json()
                async with client.get(f"{idle.url}/-/metrics") as answer:
                    metrics = await answer.text()
        finally:
            for proc in (served, idle):
                assert await proc.stop() == 0
    token = document["routes"]["cosmic"]["token"]
    assert (token["state"], token["source"]) == ("valid", "store")
    assert token["expires_in_seconds"] > 0
    assert document["workers"] == 1
    assert state.login_attempts == 1
    assert 'authproxy_token_expiry_seconds{route="cosmic"}' in metrics
