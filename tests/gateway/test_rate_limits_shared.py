"""One rate limit per client, whatever serves it: `--workers 2` and `4` on one port, two replicas
on a real `redis-server`, and a host whose Redis went away. Each check counts 2xx against 429
answers to a burst of requests, every one on a new connection (so the kernel spreads them).

The rate is one request per 100 s, so however slowly a shared machine runs the burst, no token
refills during it: exactly `burst` requests pass.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cryptography.fernet import Fernet
from proc import ProxyProcess, start_proxy
from redis_server import RedisServer, running_redis
from supervised import BOUND, supervisor, upstreams, write_config

from authproxy.gateway.rates import gcra
from authproxy.settings import RateLimit

KEY = "team-ci-key-7b1e44d0a9c3"
CLIENTS = f"clients:\n  ci:\n    key: {KEY}\n    rate_limit: {{rate: 0.01, burst: 3}}\n"
BURST = 24


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


async def burst(urls: list[str], count: int = BURST) -> Counter[int]:
    """`count` requests at once, spread over `urls`, each on a connection of its own."""
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:

        async def one(i: int) -> int:
            url = f"{urls[i % len(urls)]}/plain/x/{i}"
            async with client.get(url, headers={"X-Authproxy-Key": KEY}) as answer:
                await answer.read()
                return answer.status

        statuses = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(count))), BOUND)
    return Counter(statuses)


def test_gcra_allows_the_burst_then_one_request_per_interval() -> None:
    limit = RateLimit(rate=2.0, burst=3)
    tat, waits = 0.0, []
    for _ in range(4):
        tat, wait = gcra(tat, 100.0, limit)
        waits.append(wait)
    assert waits == [0.0, 0.0, 0.0, pytest.approx(0.5)]
    assert gcra(tat, 100.5, limit)[1] == 0.0  # one more after 1/rate
    assert gcra(tat, 100.4, limit)[1] == pytest.approx(0.1)


@pytest.mark.parametrize("workers", [2, 4])
async def test_workers_share_one_limit_per_client(tmp_path: Path, workers: int) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory", top=CLIENTS)
        async with supervisor(config, workers) as running:
            answers = await burst([running.url])
            # The burst reached several workers, and still only `burst` requests passed.
            served = running.matching(
                lambda e: e.get("event") == "request" and e.get("client") == "ci"
            )
            assert len({event["worker"] for event in served}) > 1
            assert await running.exit_code() == 0
    assert answers == Counter({200: 3, 429: BURST - 3})


def replica_config(tmp_path: Path, name: str, plain_url: str, redis_url: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        CLIENTS + f"token_store: {redis_url}\n"
        f"token_store_key: {Fernet.generate_key().decode()}\n"
        f"routes:\n  plain:\n    upstream: {plain_url}\n"
    )
    return path


async def replicas(tmp_path: Path, plain_url: str, redis_url: str) -> list[ProxyProcess]:
    return list(
        await asyncio.gather(
            *(
                start_proxy(
                    "serve",
                    "--config",
                    str(replica_config(tmp_path, f"r{i}", plain_url, redis_url)),
                    "--listen",
                    "127.0.0.1:0",
                )
                for i in range(2)
            )
        )
    )


async def test_replicas_on_redis_share_one_limit_per_client(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with upstreams() as ups:
        procs = await replicas(tmp_path, ups.plain_url, redis.url)
        try:
            answers = await burst([proc.url for proc in procs])
        finally:
            for proc in procs:
                assert await proc.stop() == 0
    assert answers == Counter({200: 3, 429: BURST - 3})


async def test_without_redis_each_host_limits_on_its_own_and_says_so(
    tmp_path: Path, redis: RedisServer
) -> None:
    async with upstreams() as ups:
        procs = await replicas(tmp_path, ups.plain_url, redis.url)
        try:
            redis.stop()
            answers = await burst([proc.url for proc in procs])
        finally:
            for proc in procs:
                assert await proc.stop() == 0
    # Neither refused everything nor opened everything: each replica gave its own burst.
    assert answers == Counter({200: 6, 429: BURST - 6})
    for proc in procs:
        assert "rate limits cannot be shared: Redis does not answer" in proc.text
