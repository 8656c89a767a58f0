"""The token file shared by workers: one login across store instances and across processes.

Two `FileTokenStore` instances on one path stand for two workers (a flock taken through two open
files conflicts even within one process); a subprocess holding the lock stands for another
worker, and killing it shows the kernel releases its lock.
"""

from __future__ import annotations

import asyncio
import json
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import MappingProxyType

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from authproxy.auth.grant import Grant
from authproxy.auth.shared import SharedTokens
from authproxy.config.load import parse_settings
from authproxy.crypto import NullCipher, TokenCipher, generate_key
from authproxy.emulators import cosmic
from authproxy.emulators.common import EmulatorState
from authproxy.errors import StoreUnavailable
from authproxy.server.app import Proxy
from authproxy.stores.file import FileStore
from authproxy.stores.flock import FileTokenStore

KEY = "cosmic:0123456789abcdef01234567"
BOUND = 20.0
ROOT = Path(__file__).resolve().parents[2]


def grant(token: str, expires_in: float = 3600.0) -> Grant:
    now = time.time()
    return Grant(MappingProxyType({"token": token}), now + expires_in, now)


def usable(found: Grant) -> bool:
    return found.expires_at is None or found.expires_at > time.time()


class Logins:
    """A login that counts its calls and, until released, waits."""

    def __init__(self, token: str, *, hold: bool = False) -> None:
        self.calls = 0
        self.token = token
        self.release = asyncio.Event()
        if not hold:
            self.release.set()

    async def __call__(self) -> Grant:
        self.calls += 1
        await self.release.wait()
        return grant(self.token)


async def test_two_stores_on_one_file_log_in_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    first = SharedTokens(FileTokenStore(path, NullCipher()))
    second = SharedTokens(FileTokenStore(path, NullCipher()))
    login_a, login_b = Logins("token-a", hold=True), Logins("token-b", hold=True)
    loop = asyncio.get_running_loop()
    a = loop.create_task(first.obtain(KEY, usable, login_a), name="obtain-a")
    b = loop.create_task(second.obtain(KEY, usable, login_b), name="obtain-b")
    for _ in range(1000):
        if login_a.calls + login_b.calls:
            break
        await asyncio.sleep(0.005)
    # Whichever took the lock logs in; let both logins go so a wrong second one would show.
    login_a.release.set()
    login_b.release.set()
    outcomes = await asyncio.wait_for(asyncio.gather(a, b), BOUND)
    assert login_a.calls + login_b.calls == 1
    assert outcomes[0].grant.values == outcomes[1].grant.values
    assert sorted(o.logged_in for o in outcomes) == [False, True]
    assert all(o.published for o in outcomes)
    # The file is the FileStore format: a restarted single process reads it.
    assert FileStore(str(path)).load(KEY) is not None


WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from types import MappingProxyType
    from authproxy.auth.grant import Grant
    from authproxy.crypto import NullCipher
    from authproxy.stores.flock import FileTokenStore

    async def main() -> None:
        store = FileTokenStore(sys.argv[1], NullCipher())
        for n in range(30):
            now = time.time()
            grant = Grant(MappingProxyType({"token": f"t{n}"}), now + 3600, now)
            await store.save(f"{sys.argv[2]}:{n}", grant, fence=0)

    asyncio.run(main())
    """
)


async def test_writers_in_several_processes_never_lose_each_others_entries(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    writers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, str(path), f"route{i}", cwd=ROOT
        )
        for i in range(3)
    ]
    codes = await asyncio.wait_for(asyncio.gather(*(w.wait() for w in writers)), BOUND)
    assert codes == [0, 0, 0]
    assert len(json.loads(path.read_text())["tokens"]) == 90


async def test_delete_only_forgets_the_refused_token(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "tokens.json", NullCipher())
    await store.save(KEY, grant("newer"), fence=0)
    assert not await store.delete(KEY, if_token="older")
    assert await store.load(KEY) is not None
    assert await store.delete(KEY, if_token="newer")
    assert await store.load(KEY) is None
    assert not await store.delete(KEY)


async def test_expired_token_in_the_file_means_one_new_login(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path, NullCipher())
    await store.save(KEY, grant("stale", expires_in=-60), fence=0)
    login = Logins("fresh")
    outcome = await SharedTokens(store).obtain(KEY, usable, login)
    assert (login.calls, outcome.logged_in, outcome.grant.values["token"]) == (1, True, "fresh")
    # A second worker now finds it and does not log in.
    other = Logins("unused")
    found = await SharedTokens(FileTokenStore(path, NullCipher())).obtain(KEY, usable, other)
    assert (other.calls, found.logged_in, found.grant.values["token"]) == (0, False, "fresh")


@pytest.mark.parametrize("content", ["{not json", '{"version": 1, "tokens": []}', "\x00\xff"])
async def test_corrupt_file_reads_as_empty_once_warned_and_is_replaced(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(content, encoding="utf-8", errors="surrogateescape")
    store = FileTokenStore(path, NullCipher())
    with capture_logs() as logs:
        assert await store.load(KEY) is None
        assert await store.load(KEY) is None
        outcome = await SharedTokens(store).obtain(KEY, usable, Logins("fresh"))
    assert outcome.logged_in
    warnings = [e for e in logs if e["event"].startswith("shared token file unreadable")]
    assert len(warnings) == 1
    assert (await store.load(KEY)) == outcome.grant


async def test_a_file_sealed_with_another_key_is_absent(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    await FileTokenStore(path, TokenCipher.from_key(generate_key())).save(
        KEY, grant("token-9f3e"), fence=0
    )
    assert "token-9f3e" not in path.read_text()
    assert await FileTokenStore(path, TokenCipher.from_key(generate_key())).load(KEY) is None


async def test_an_unusable_directory_is_store_unavailable(tmp_path: Path) -> None:
    # A file where the directory should be: fails for root too, unlike a chmod.
    (tmp_path / "blocker").write_text("")
    store = FileTokenStore(tmp_path / "blocker" / "tokens.json", NullCipher())
    assert not await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.save(KEY, grant("x"), fence=0)
    with pytest.raises(StoreUnavailable):
        async with store.login_lock(KEY):
            pass


HOLDER = textwrap.dedent(
    """
    import asyncio, sys, time
    from types import MappingProxyType
    from authproxy.auth.grant import Grant
    from authproxy.crypto import NullCipher
    from authproxy.stores.flock import FileTokenStore

    async def main() -> None:
        store = FileTokenStore(sys.argv[1], NullCipher())
        async with store.login_lock(sys.argv[2]) as lock:
            print("locked", flush=True)
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            now = time.time()
            grant = Grant(MappingProxyType({"token": "from-child"}), now + 3600, now)
            await store.save(sys.argv[2], grant, fence=lock.fence)

    asyncio.run(main())
    """
)


@asynccontextmanager
async def holder(path: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """Another process that holds the login lock of KEY until told to save, or killed."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        str(path),
        KEY,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), BOUND) == b"locked\n"
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def test_a_waiter_takes_the_token_another_process_saved(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    async with holder(path) as process:
        login = Logins("ours")
        loop = asyncio.get_running_loop()
        waiting = loop.create_task(
            SharedTokens(FileTokenStore(path, NullCipher())).obtain(KEY, usable, login),
            name="waiter",
        )
        assert not waiting.done()
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
        outcome = await asyncio.wait_for(waiting, BOUND)
        assert await asyncio.wait_for(process.wait(), BOUND) == 0
    assert (login.calls, outcome.logged_in, outcome.grant.values["token"]) == (
        0,
        False,
        "from-child",
    )


async def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    async with holder(path) as process:
        login = Logins("ours")
        loop = asyncio.get_running_loop()
        waiting = loop.create_task(
            SharedTokens(FileTokenStore(path, NullCipher())).obtain(KEY, usable, login),
            name="waiter",
        )
        process.kill()
        outcome = await asyncio.wait_for(waiting, BOUND)
    assert (login.calls, outcome.logged_in, outcome.grant.values["token"]) == (1, True, "ours")


@asynccontextmanager
async def emulator(login_delay: float) -> AsyncIterator[tuple[str, EmulatorState]]:
    app = cosmic.make_app()
    state = app[cosmic.STATE]
    state.login_delay = login_delay
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", state
    finally:
        await runner.cleanup()


async def test_proxies_started_as_workers_share_the_file_and_log_in_once(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    async with emulator(login_delay=0.3) as (url, state):
        document = {
            "listen": "127.0.0.1:0",
            "token_store": str(path),
            "routes": {
                "cosmic": {"upstream": url, "auth": {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}}
            },
        }
        settings = parse_settings(document, source="test", environ={})
        proxies = [Proxy(settings, workers=2) for _ in range(2)]
        for proxy in proxies:
            await proxy.start()
        try:
            async with aiohttp.ClientSession() as client:

                async def get(i: int) -> int:
                    target = f"{proxies[i % 2].urls[0]}/cosmic/v1/buckets/{i}"
                    async with client.get(target) as answer:
                        return answer.status

                statuses = await asyncio.wait_for(
                    asyncio.gather(*(get(i) for i in range(20))), BOUND
                )
        finally:
            for proxy in proxies:
                await proxy.stop()
        assert statuses == [200] * 20
        assert state.login_attempts == 1
        # A worker started later (a restart) reuses the stored token without a login.
        later = Proxy(settings, workers=2)
        await later.start()
        try:
            assert later.managers["cosmic"].usable(later.clock.now())
        finally:
            await later.stop()
        assert state.login_attempts == 1
