"""Rotating `token_store_key` from K1 to [K2, K1] and then to K2 costs no login.

Real `authproxy serve` processes (one, or a supervisor with two workers, or two replicas on a
real `redis-server`) are stopped and started again with each key list in turn; the upstream is an
emulator in this process, so its login counter is the ground truth.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.fernet import Fernet
from proc import ProxyProcess, run_cli, start_proxy
from redis_server import RedisServer, running_redis

from authproxy.crypto import TokenCipher
from authproxy.emulators import cosmic
from authproxy.emulators.common import EmulatorState
from authproxy.stores.codec import open_grant
from authproxy.stores.token_file import read_grants

BOUND = 30.0


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@asynccontextmanager
async def upstream() -> AsyncIterator[tuple[str, EmulatorState]]:
    app = cosmic.make_app()
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", app[cosmic.STATE]
    finally:
        await runner.cleanup()


def new_key() -> str:
    return Fernet.generate_key().decode()


def write_config(path: Path, upstream_url: str, store: str, keys: str | Sequence[str]) -> Path:
    credentials = cosmic.DEMO_CREDENTIALS
    path.write_text(
        f"token_store: {store}\n"
        f"token_store_key: {json.dumps(keys)}\n"
        "routes:\n"
        "  cosmic:\n"
        f"    upstream: {upstream_url}\n"
        f"    auth: {{preset: cosmic, email: {credentials['email']}, "
        f"password: {credentials['password']}}}\n"
    )
    return path


async def serve(config: Path, *more: str) -> ProxyProcess:
    return await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0", *more)


async def get_ok(procs: Sequence[ProxyProcess], count: int) -> None:
    connector = aiohttp.TCPConnector(limit=0, force_close=True)  # spread over the workers
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one(i: int) -> int:
            url = f"{procs[i % len(procs)].url}/cosmic/v1/buckets/{i}"
            async with client.get(url) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), BOUND)
    assert statuses == [200] * count


@pytest.mark.parametrize("workers", [1, 2])
async def test_the_token_file_survives_k1_then_k2_k1_then_k2_without_a_login(
    tmp_path: Path, workers: int
) -> None:
    k1, k2 = new_key(), new_key()
    store = tmp_path / "state" / "tokens.json"
    async with upstream() as (url, state):
        for keys in (k1, [k2, k1], k2):
            config = write_config(tmp_path / "c.yaml", url, str(store), keys)
            proc = await serve(config, "--workers", str(workers))
            try:
                await get_ok([proc], 20)
            finally:
                assert await proc.stop() == 0
            assert state.login_attempts == 1, keys
            assert "stored token is not usable" not in proc.text
        assert "token store unreadable" not in proc.text
    # The file is sealed under K2 now, and holds the token under K2's name alone.
    grants = read_grants(store, TokenCipher.from_key(k2))
    assert len(grants) == 1


async def test_two_replicas_on_redis_rotate_k1_then_k2_k1_then_k2_without_a_login(
    tmp_path: Path, redis: RedisServer
) -> None:
    k1, k2 = new_key(), new_key()
    async with upstream() as (url, state):
        for keys in (k1, [k2, k1], k2):
            configs = [
                write_config(tmp_path / f"r{i}.yaml", url, redis.url, keys) for i in range(2)
            ]
            procs = list(await asyncio.gather(*(serve(config) for config in configs)))
            try:
                await get_ok(procs, 40)
            finally:
                for proc in procs:
                    assert await proc.stop() == 0
            assert state.login_attempts == 1, keys
    import redis as redis_client

    raw = redis_client.Redis.from_url(redis.url, decode_responses=True)
    cipher = TokenCipher.from_key(k2)
    try:
        names = [str(key) for key in raw.keys("authproxy:token:*")]
        sealed = {name: raw.hget(name, "grant") for name in names}
    finally:
        raw.close()
    readable = [
        name
        for name, value in sealed.items()
        if value is not None
        and open_grant(name.removeprefix("authproxy:token:"), str(value), cipher, time.time())
    ]
    # The token moved to K2's name, sealed under K2; K1's copy waits out its token's expiry.
    assert len(names) == 2
    assert len(readable) == 1


async def test_a_rolling_rotation_shares_one_token_between_old_and_new_replicas(
    tmp_path: Path, redis: RedisServer
) -> None:
    """Mid-rotation one replica runs [K2, K1] and the other still K1: both use the one token."""
    k1, k2 = new_key(), new_key()
    async with upstream() as (url, state):
        old = await serve(write_config(tmp_path / "old.yaml", url, redis.url, k1))
        try:
            await get_ok([old], 5)
            new = await serve(write_config(tmp_path / "new.yaml", url, redis.url, [k2, k1]))
            try:
                await get_ok([old, new], 40)
            finally:
                assert await new.stop() == 0
        finally:
            assert await old.stop() == 0
        assert state.login_attempts == 1


async def test_keygen_prints_a_key_alone_and_says_how_to_rotate() -> None:
    code, out, err = await run_cli("keygen")
    assert code == 0
    assert len(out.strip()) == 44
    TokenCipher.from_key(out)
    assert "token_store_key: [NEW, OLD]" in err
    code, out, _err = await run_cli("keygen", "--help")
    assert code == 0
    assert "token_store_key: [NEW, OLD]" in " ".join(out.split())
