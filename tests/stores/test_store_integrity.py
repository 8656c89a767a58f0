"""Stored tokens someone else wrote: moved, tampered with, or reached through a planted symlink.

Whoever can write to Redis or to the token directory, without the Fernet key, must not be able to
steer the proxy: a sealed token moved to another route's name, a pinned-forever expiry, a lock
file that is a symlink. Each reads as absent or is refused, and the proxy logs in instead. Real
proxies, a real `redis-server` and real files; a raw Redis client plays the attacker.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from authfakes import route, running_proxy, serve
from proc import start_proxy
from redis.asyncio import Redis
from redis_server import RedisServer, running_redis
from structlog.testing import capture_logs

from authproxy.auth.clock import ManualClock, SystemClock
from authproxy.auth.grant import Grant
from authproxy.config.load import parse_settings
from authproxy.crypto import NullCipher, generate_key
from authproxy.emulators import cosmic
from authproxy.errors import StoreUnavailable
from authproxy.settings import Settings
from authproxy.stores.file import FileStore
from authproxy.stores.flock import FileTokenStore
from authproxy.stores.names import name_key_for, store_key

COSMIC = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}
UNUSABLE = (
    "stored token is not usable here (another key, another entry's value, an older format or "
    "impossible values); ignoring it"
)
YEAR = 365.25 * 24 * 3600


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def settings(routes: Mapping[str, object], token_store: str, key: str | None = None) -> Settings:
    document: dict[str, object] = {"listen": "127.0.0.1:0", "token_store": token_store}
    if key is not None:
        document["token_store_key"] = key
    document["routes"] = dict(routes)
    return parse_settings(document, source="test", environ={})


def redis_name(config: Settings, name: str) -> str:
    return f"authproxy:token:{store_key(config.route(name), name_key_for(config.token_store))}"


# ---- 11: a sealed token is bound to its name ------------------------------------------------


async def test_a_sealed_token_moved_to_another_routes_name_is_refused(redis: RedisServer) -> None:
    app_a, app_b = cosmic.make_app(), cosmic.make_app()
    async with serve(app_a, cosmic.LOGIN_PATH) as a, serve(app_b, cosmic.LOGIN_PATH) as b:
        routes = {"a": route(a.url, **COSMIC), "b": route(b.url, **COSMIC)}
        config = settings(routes, redis.url, key=generate_key())
        async with running_proxy(config, SystemClock()) as proxy:
            assert (await proxy.get("/a/x")).status == 200
        # Without the key, a writer can still copy route a's sealed value over route b's.
        raw = Redis.from_url(redis.url)
        try:
            sealed = await raw.hget(redis_name(config, "a"), "grant")
            assert sealed is not None
            await raw.hset(redis_name(config, "b"), mapping={"fence": 1, "grant": sealed})
        finally:
            await raw.aclose()
        with capture_logs() as logs:
            async with running_proxy(config, SystemClock()) as proxy:
                assert (await proxy.get("/b/x")).status == 200
    # b never saw a's token (it would have refused it: one more request), and logged in itself.
    assert (b.state.logins, b.state.requests) == (1, 1)
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == [UNUSABLE]


async def test_without_a_key_redis_warns_at_start_naming_the_store_not_its_password(
    tmp_path: Path,
) -> None:
    password = "redis-pw-4b7e1c9a"
    with running_redis("--requirepass", password) as server:
        config = tmp_path / "config.yaml"
        config.write_text(
            f"token_store: redis://:{password}@127.0.0.1:{server.port}/0\n"
            "routes:\n  api:\n    upstream: http://127.0.0.1:1\n"
        )
        proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        assert await proxy.stop() == 0
    warnings = [
        event
        for line in proxy.output
        if line.startswith("{") and "plain text" in (event := json.loads(line))["event"]
    ]
    assert len(warnings) == 1
    assert warnings[0]["store"] == f"127.0.0.1:{server.port}"
    assert password not in proxy.text


# ---- 16: impossible stored values read as absent ---------------------------------------------


def tampered(text: str, field: str, value: float) -> str:
    """A stored grant document with one time replaced, whatever envelope it is in."""
    document = json.loads(text)
    grant: dict[str, Any] = document.get("grant", document)
    grant[field] = value
    return json.dumps(document)


BAD_TIMES = [
    ("expires_at", math.inf),
    ("expires_at", 1e308),
    ("expires_at", math.nan),
    ("expires_at", time.time() + 11 * YEAR),
    ("obtained_at", time.time() + YEAR),
    ("obtained_at", -1e308),
]
BAD_IDS = [
    "expiry-inf",
    "expiry-1e308",
    "expiry-nan",
    "expiry-11y",
    "obtained-future",
    "obtained-old",
]


@pytest.mark.parametrize(("field", "value"), BAD_TIMES, ids=BAD_IDS)
async def test_impossible_times_in_the_token_file_read_as_absent(
    tmp_path: Path, field: str, value: float
) -> None:
    path = tmp_path / "tokens.json"
    clock = ManualClock(time.time())
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        config = settings({"cosmic": route(emu.url, **COSMIC)}, "memory")
        async with running_proxy(config, clock, FileStore(str(path))) as proxy:
            assert (await proxy.get("/cosmic/x")).status == 200
        document = json.loads(path.read_text())
        ((name, entry),) = document["tokens"].items()
        document["tokens"][name] = json.loads(tampered(json.dumps(entry), field, value))
        path.write_text(json.dumps(document))  # Infinity and NaN as Python's json writes them
        with capture_logs() as logs:
            async with running_proxy(config, clock, FileStore(str(path))) as proxy:
                status = await proxy.get("/-/status")
                assert (await proxy.get("/cosmic/x")).status == 200
    assert status.status == 200
    assert status.json()["routes"]["cosmic"]["token"]["state"] == "none"
    assert emu.state.logins == 2
    assert "stored token has impossible values; ignoring it" in [e["event"] for e in logs]


@pytest.mark.parametrize(("field", "value"), BAD_TIMES, ids=BAD_IDS)
async def test_impossible_times_in_redis_without_a_key_read_as_absent(
    redis: RedisServer, field: str, value: float
) -> None:
    async with serve(cosmic.make_app(), cosmic.LOGIN_PATH) as emu:
        config = settings({"cosmic": route(emu.url, **COSMIC)}, redis.url)
        async with running_proxy(config, SystemClock()) as proxy:
            assert (await proxy.get("/cosmic/x")).status == 200
        raw = Redis.from_url(redis.url)
        try:
            (name,) = await raw.keys("authproxy:token:*")
            stored = await raw.hget(name, "grant")
            assert isinstance(stored, bytes)
            await raw.hset(name, "grant", tampered(stored.decode(), field, value))
        finally:
            await raw.aclose()
        async with running_proxy(config, SystemClock()) as proxy:
            status = await proxy.get("/-/status")
            assert (await proxy.get("/cosmic/x")).status == 200
    assert status.status == 200
    assert emu.state.logins == 2


# ---- 17: lock files are never reached through a symlink --------------------------------------


@pytest.mark.parametrize("lock", ["write", "login"])
async def test_a_symlinked_lock_file_is_refused_not_followed(tmp_path: Path, lock: str) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path, NullCipher())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    existing = elsewhere / "existing"
    existing.write_text("untouched")
    grant = Grant(MappingProxyType({"token": "tok-symlink-1"}), None, time.time())
    if lock == "write":
        lock_path = path.with_name("tokens.json.lock")
    else:
        lock_path = store.login_lock("cosmic:abc").path

    async def take_lock() -> None:
        if lock == "write":
            await store.save("cosmic:abc", grant, fence=0)
        else:
            async with store.login_lock("cosmic:abc"):
                pass

    for target in (elsewhere / "created", existing):
        lock_path.symlink_to(target)
        with pytest.raises(StoreUnavailable, match="is a symbolic link; refusing to follow it"):
            await take_lock()
        lock_path.unlink()
    assert sorted(os.listdir(elsewhere)) == ["existing"]  # the dangling link created nothing
    assert existing.read_text() == "untouched"
    assert not path.exists()


async def test_a_token_directory_others_may_write_is_a_warning_at_start(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    config = tmp_path / "config.yaml"
    config.write_text(
        f"token_store: {shared}/tokens.json\nroutes:\n  api:\n    upstream: http://127.0.0.1:1\n"
    )
    proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0")
    assert await proxy.stop() == 0
    warnings = [
        event
        for line in proxy.output
        if line.startswith("{")
        and "writable by group or others" in (event := json.loads(line))["event"]
    ]
    assert [(w["path"], w["mode"]) for w in warnings] == [(str(shared), "0777")]
