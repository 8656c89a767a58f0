"""The shared Redis token store against real `redis-server` processes: no mocks of Redis.

Two `RedisTokenStore` instances on one server stand for two proxy replicas; a killed subprocess
stands for a replica that dies holding the login lock.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer, running_redis
from structlog.testing import capture_logs

from authproxy.auth.grant import Grant
from authproxy.crypto import NullCipher, TokenCipher, generate_key
from authproxy.errors import AuthproxyError, StoreUnavailable
from authproxy.secrets import REGISTRY
from authproxy.stores.redis import RedisTokenStore

KEY = "cosmic:0123456789abcdef01234567"
TOKEN_NAME = f"authproxy:token:{KEY}"
LOCK_NAME = f"authproxy:lock:{KEY}"
SECRET_KEY = generate_key()
ROOT = Path(__file__).resolve().parents[2]
UNUSABLE = (
    "stored token is not usable here (another key, another entry's value, an older format or "
    "impossible values); ignoring it"
)


def grant(token: str, expires_in: float | None = 3600.0) -> Grant:
    now = time.time()
    expires_at = None if expires_in is None else now + expires_in
    return Grant(MappingProxyType({"token": token, "refresh_token": f"r-{token}"}), expires_at, now)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with running_redis() as running:
        yield running


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisTokenStore]:
    opened = RedisTokenStore(server.url, TokenCipher.from_key(SECRET_KEY))
    yield opened
    await opened.close()


@pytest.fixture
async def replica(server: RedisServer) -> AsyncIterator[RedisTokenStore]:
    """A second store with its own connections: another proxy replica."""
    opened = RedisTokenStore(server.url, TokenCipher.from_key(SECRET_KEY))
    yield opened
    await opened.close()


@pytest.fixture
async def plain(server: RedisServer) -> AsyncIterator[Redis]:
    """A plain client, to see what is really stored."""
    client = Redis.from_url(server.url)
    yield client
    await client.aclose()


async def test_round_trip_is_encrypted_at_rest(store: RedisTokenStore, plain: Redis) -> None:
    saved = grant("tok-7d1e0b2a-roundtrip")
    assert await store.save(KEY, saved, fence=1)
    assert await store.load(KEY) == saved
    assert "tok-7d1e0b2a-roundtrip" in REGISTRY  # so the redaction processor masks it
    stored = await plain.hgetall(TOKEN_NAME)
    assert stored[b"fence"] == b"1"
    assert b"tok-7d1e0b2a" not in stored[b"grant"]
    assert b"{" not in stored[b"grant"]
    assert b"values" not in stored[b"grant"]
    assert await store.load("other:key") is None


async def test_ttl_outlives_expiry_a_little(store: RedisTokenStore, plain: Redis) -> None:
    await store.save(KEY, grant("tok-ttl", expires_in=100), fence=1)
    assert 399_000 < await plain.pttl(TOKEN_NAME) <= 400_000  # 100 s + 300 s grace
    await store.save(KEY, grant("tok-ttl", expires_in=None), fence=1)
    assert await plain.pttl(TOKEN_NAME) == -1  # no known expiry: kept until refused


async def test_plain_store_without_key(server: RedisServer, plain: Redis) -> None:
    store = RedisTokenStore(server.url, NullCipher())
    try:
        saved = grant("tok-plain", expires_in=None)
        assert await store.save(KEY, saved, fence=1)
        assert await store.load(KEY) == saved
        stored = await plain.hget(TOKEN_NAME, "grant")
        assert isinstance(stored, bytes)
        assert b"tok-plain" in stored
    finally:
        await store.close()


async def test_wrong_key_reads_as_absent_and_warns_once(
    server: RedisServer, store: RedisTokenStore
) -> None:
    await store.save(KEY, grant("tok-wrong-key-5c2f"), fence=1)
    other = RedisTokenStore(server.url, TokenCipher.from_key(generate_key()))
    try:
        with capture_logs() as logs:
            assert await other.load(KEY) is None
            assert await other.load(KEY) is None
            assert not await other.delete(KEY, if_token="tok-wrong-key-5c2f")
    finally:
        await other.close()
    assert [entry["event"] for entry in logs] == [UNUSABLE]
    assert logs[0]["log_level"] == "warning"
    assert "tok-wrong-key" not in repr(logs)
    assert await store.load(KEY) is not None  # the foreign reader deleted nothing


async def test_fencing_refuses_a_stale_holder(store: RedisTokenStore) -> None:
    assert await store.save(KEY, grant("tok-fence-5"), fence=5)
    assert not await store.save(KEY, grant("tok-fence-4"), fence=4)
    assert (loaded := await store.load(KEY)) is not None
    assert loaded.values["token"] == "tok-fence-5"
    assert await store.save(KEY, grant("tok-fence-5b"), fence=5)  # the same holder, a refresh
    assert (loaded := await store.load(KEY)) is not None
    assert loaded.values["token"] == "tok-fence-5b"


async def test_delete_only_the_token_that_failed(store: RedisTokenStore) -> None:
    await store.save(KEY, grant("tok-old"), fence=1)
    assert not await store.delete(KEY, if_token="tok-unknown")
    await store.save(KEY, grant("tok-new"), fence=2)
    assert not await store.delete(KEY, if_token="tok-old")  # a 401 on the old token
    assert (loaded := await store.load(KEY)) is not None
    assert loaded.values["token"] == "tok-new"
    assert await store.delete(KEY, if_token="tok-new")
    assert await store.load(KEY) is None
    assert not await store.delete(KEY, if_token="tok-new")
    # The fence outlives the delete: the older holder still cannot write its token back.
    assert not await store.save(KEY, grant("tok-old"), fence=1)
    assert await store.save(KEY, grant("tok-newer"), fence=3)
    assert await store.delete(KEY)
    assert await store.load(KEY) is None


async def test_each_acquisition_gets_a_higher_fence(store: RedisTokenStore, plain: Redis) -> None:
    fences = []
    for _ in range(2):
        async with store.login_lock(KEY, lease=1.0) as lock:
            assert lock.held
            assert await plain.get(LOCK_NAME) is not None
            fences.append(lock.fence)
        assert await plain.get(LOCK_NAME) is None  # released on exit, not left to the lease
    assert fences == [1, 2]
    with pytest.raises(RuntimeError, match="not held"):
        _ = lock.fence


async def test_a_cancelled_holder_releases_at_once(store: RedisTokenStore, plain: Redis) -> None:
    entered = asyncio.Event()

    async def holder() -> None:
        async with store.login_lock(KEY, lease=5.0):
            entered.set()
            await asyncio.sleep(60)  # a login cut short by shutdown or a client going away

    task = asyncio.get_running_loop().create_task(holder(), name="holder")
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task  # the cancellation still propagates through the lock's exit
    assert await plain.get(LOCK_NAME) is None


async def has_token(store: RedisTokenStore) -> bool:
    return await store.load(KEY) is not None


async def test_single_flight_across_two_replicas(
    store: RedisTokenStore, replica: RedisTokenStore
) -> None:
    logins: list[float] = []

    async def user(store: RedisTokenStore) -> str:
        """The token manager's pattern: load, lock, load again, log in only if still missing."""
        if (found := await store.load(KEY)) is not None:
            return found.values["token"]
        ready = functools.partial(has_token, store)
        async with store.login_lock(KEY, lease=2.0, ready=ready) as lock:
            if (found := await store.load(KEY)) is not None:
                return found.values["token"]
            logins.append(time.monotonic())
            await asyncio.sleep(0.3)  # the upstream login
            obtained = grant(f"tok-login-{len(logins)}")
            assert await store.save(KEY, obtained, fence=lock.fence)
            return obtained.values["token"]

    tokens = await asyncio.gather(*(user(store if i % 2 else replica) for i in range(20)))
    assert len(logins) == 1
    assert set(tokens) == {"tok-login-1"}


async def test_waiters_leave_once_the_token_arrives(
    store: RedisTokenStore, replica: RedisTokenStore
) -> None:
    saved = asyncio.Event()

    async def holder() -> None:
        async with store.login_lock(KEY, lease=5.0) as lock:
            await store.save(KEY, grant("tok-early"), fence=lock.fence)
            saved.set()
            await asyncio.sleep(1.0)  # still holding: a slow release, or more work after saving

    async def waiter() -> float:
        await asyncio.sleep(0.05)
        async with replica.login_lock(KEY, ready=functools.partial(has_token, replica)) as lock:
            assert not lock.held
            return time.monotonic()

    holding = asyncio.get_running_loop().create_task(holder(), name="holder")
    left = await waiter()
    assert saved.is_set()
    assert not holding.done()  # the waiter did not wait for the release
    await holding
    assert time.monotonic() - left > 0.5


async def test_extension_keeps_a_slow_holder_alive(
    store: RedisTokenStore, replica: RedisTokenStore, plain: Redis
) -> None:
    events: list[str] = []
    held = asyncio.Event()

    async def slow_holder() -> None:
        async with store.login_lock(KEY, lease=0.5) as lock:
            events.append("held")
            held.set()
            await asyncio.sleep(1.5)  # three leases long
            assert not lock.lost
            assert await plain.pttl(LOCK_NAME) > 0
            events.append("done")

    async def contender() -> None:
        await held.wait()
        async with replica.login_lock(KEY, lease=0.5) as lock:
            events.append(f"contender:{lock.fence}")

    started = time.monotonic()
    await asyncio.gather(slow_holder(), contender())
    assert events == ["held", "done", "contender:2"]
    assert time.monotonic() - started < 2.5


async def test_a_lock_taken_over_is_neither_extended_nor_released(
    store: RedisTokenStore, plain: Redis
) -> None:
    async with store.login_lock(KEY, lease=0.3) as lock:
        # What the holder sees once its lease ran out and another replica won the lock.
        await plain.set(LOCK_NAME, "another-replica", px=5000)
        await asyncio.sleep(0.25)
        assert lock.lost
    assert await plain.get(LOCK_NAME) == b"another-replica"
    assert await plain.pttl(LOCK_NAME) > 4000  # not shortened to our lease either


HOLDER = """
import asyncio, sys
from authproxy.crypto import NullCipher
from authproxy.stores.redis import RedisTokenStore

async def main() -> None:
    store = RedisTokenStore(sys.argv[1], NullCipher())
    async with store.login_lock(sys.argv[2], lease=0.5) as lock:
        print(lock.fence, flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_dead_holder_is_replaced_after_its_lease(
    server: RedisServer, store: RedisTokenStore, plain: Redis
) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", HOLDER, server.url, KEY, stdout=asyncio.subprocess.PIPE, cwd=ROOT
    )
    assert holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 15) == b"1\n"
        await asyncio.sleep(0.7)  # past the first lease: the holder is extending it
        assert await plain.get(LOCK_NAME) is not None
    finally:
        holder.kill()  # SIGKILL: no release, no more extensions
        await holder.communicate()
    started = time.monotonic()
    async with store.login_lock(KEY, lease=0.5) as lock:
        waited = time.monotonic() - started
        assert lock.fence == 2
    assert 0.1 < waited < 1.0  # the rest of the dead holder's lease, no more


async def test_redis_down_fails_fast_and_recovers(server: RedisServer) -> None:
    store = RedisTokenStore(server.url, TokenCipher.from_key(SECRET_KEY), timeout=0.5)
    try:
        assert await store.save(KEY, grant("tok-before"), fence=1)
        server.stop()
        server.start()  # a restart drops every pooled connection, and the data (no persistence)
        assert await store.load(KEY) is None
        assert await store.save(KEY, grant("tok-after-restart"), fence=1)

        server.stop()
        assert not await store.ping()
        operations: dict[str, Callable[[], Awaitable[object]]] = {
            "load": lambda: store.load(KEY),
            "save": lambda: store.save(KEY, grant("tok-down"), fence=9),
            "delete": lambda: store.delete(KEY, if_token="tok-down"),
            "delete all": lambda: store.delete(KEY),
            "lock": lambda: store.login_lock(KEY).__aenter__(),
        }
        for name, operation in operations.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await operation()
            assert time.monotonic() - started < 1.0, name
            assert isinstance(caught.value, AuthproxyError)
            assert str(caught.value).startswith(f"Redis token store 127.0.0.1:{server.port}")

        server.start()
        assert await store.ping()
        assert await store.save(KEY, grant("tok-back"), fence=1)
        assert (loaded := await store.load(KEY)) is not None
        assert loaded.values["token"] == "tok-back"
    finally:
        await store.close()


async def test_an_unresponsive_redis_is_bounded_by_the_timeout() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers: a hung server or a black-holed route
        writer.close()
        await writer.wait_closed()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    store = RedisTokenStore(f"redis://127.0.0.1:{port}", NullCipher(), timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unavailable: TimeoutError"):
            await store.load(KEY)
        assert time.monotonic() - started < 1.0
        assert not await store.ping()
    finally:
        await store.close()
        silent.close()
        await silent.wait_closed()


async def test_password_never_named() -> None:
    password = "pw-e1f0c3d2b5a4"
    with running_redis("--requirepass", password) as server:
        url = f"redis://:{password}@127.0.0.1:{server.port}/0"
        store = RedisTokenStore(url, NullCipher())
        wrong = RedisTokenStore(url.replace(password, "pw-wrong-9a8b7c"), NullCipher())
        try:
            assert password in REGISTRY
            assert await store.save(KEY, grant("tok-pw"), fence=1)
            with pytest.raises(StoreUnavailable) as caught:
                await wrong.load(KEY)
            server.stop()
            with pytest.raises(StoreUnavailable) as down:
                await store.load(KEY)
        finally:
            await store.close()
            await wrong.close()
    for error in (caught.value, down.value):
        assert password not in str(error)
        assert "pw-wrong" not in str(error)
        assert "127.0.0.1" in str(error)


def test_only_redis_urls() -> None:
    for url in ("http://127.0.0.1:6379", "unix:///tmp/redis.sock", "127.0.0.1:6379"):
        with pytest.raises(ValueError, match="scheme must be redis or rediss"):
            RedisTokenStore(url, NullCipher())
