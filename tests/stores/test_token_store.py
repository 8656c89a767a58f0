"""The token store: a private JSON file of tokens only, keyed by credentials, and survived restarts.

The last test restarts a real `python -m authproxy serve` process with SIGTERM and checks that the
second process reuses the first one's token: the emulator counts exactly one login.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import MappingProxyType

import pytest
from aiohttp import ClientSession
from authfakes import bearer, route, running_proxy, serve, settings_for
from structlog.testing import capture_logs

from authproxy.auth.clock import ManualClock
from authproxy.auth.grant import Grant
from authproxy.crypto import NullCipher
from authproxy.emulators import cosmic, cucumberstudio, emnify
from authproxy.stores import file as tokens
from authproxy.stores import flock
from authproxy.stores.file import FileStore
from authproxy.stores.names import store_key
from authproxy.stores.token_file import read_grants, write_grants
from authproxy.tasks import Tasks

PASSWORD = cosmic.DEMO_CREDENTIALS["password"]
COSMIC = {"preset": "cosmic", **cosmic.DEMO_CREDENTIALS}


def file_text(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def grant(token: str, expires_at: float | None = 2_000_000_000.0) -> Grant:
    return Grant(MappingProxyType({"token": token}), expires_at, 1_700_000_000.0)


def test_file_store_is_private_json_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tokens.json"
    store = FileStore(str(path))
    store.save("cosmic:abc", grant("token-one-1111"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    document = json.loads(path.read_text())
    assert document == {
        "version": 1,
        "tokens": {
            "cosmic:abc": {
                "values": {"token": "token-one-1111"},
                "expires_at": 2_000_000_000.0,
                "obtained_at": 1_700_000_000.0,
            }
        },
    }
    first_inode = path.stat().st_ino
    store.save("cosmic:abc", grant("token-two-2222"))
    # A new file renamed over the old one, never the old one rewritten in place (a crash
    # mid-write would leave half a file); and no temp file left behind.
    assert path.stat().st_ino != first_inode
    # No temporary file is left; the lock file is what other writers (`authproxy login`) take.
    assert sorted(os.listdir(path.parent)) == ["tokens.json", "tokens.json.lock"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    reread = FileStore(str(path)).load("cosmic:abc")
    assert reread is not None
    assert dict(reread.values) == {"token": "token-two-2222"}
    store.delete("cosmic:abc")
    assert json.loads(path.read_text())["tokens"] == {}


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"tokens": {"k": {"values": 5}}}', b"\xff\xfe", b""],
    ids=["syntax", "list", "shape", "binary", "empty"],
)
async def test_corrupt_store_is_a_warning_and_a_fresh_start(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "tokens.json"
    path.write_bytes(content)
    with capture_logs() as logs:
        store = FileStore(str(path))
    # A bad entry is ignored alone; a file that is no token file at all, as a whole.
    warned = ("token store unreadable", "stored token has impossible values")
    assert [e["log_level"] for e in logs if e["event"].startswith(warned)] == ["warning"]
    clock = ManualClock()
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        settings = settings_for({"cosmic": route(emu.url, **COSMIC)})
        async with running_proxy(settings, clock, store) as proxy:
            assert (await proxy.get("/cosmic/x")).status == 200
    assert emu.state.logins == 1
    assert list(json.loads(path.read_text())["tokens"]) == [store_key(settings.routes[0], None)]


@pytest.mark.parametrize("name_key", [None, b"k" * 32], ids=["keyless", "keyed"])
def test_store_key_follows_credentials_and_upstream(name_key: bytes | None) -> None:
    def key(upstream: str, **auth: object) -> str:
        return store_key(settings_for({"cosmic": route(upstream, **auth)}).routes[0], name_key)

    base = key("http://127.0.0.1:1", **COSMIC)
    assert key("http://127.0.0.1:1", **COSMIC) == base
    assert key("http://127.0.0.1:1", **{**COSMIC, "password": "changed-password"}) != base
    assert key("http://127.0.0.1:2", **COSMIC) != base
    assert base.startswith("cosmic:")
    assert PASSWORD not in base


def test_store_names_are_no_plain_hash_of_the_credentials() -> None:
    """The old names were sha256(upstream, preset, credentials): anyone reading the store could
    test password guesses at hash speed. Keyed names differ per key; keyless ones are PBKDF2."""
    upstream = "http://127.0.0.1:1"
    settings = settings_for({"cosmic": route(upstream, **COSMIC)})
    digest = hashlib.sha256(upstream.encode())
    digest.update(b"cosmic")
    for name in sorted(cosmic.DEMO_CREDENTIALS):
        value = cosmic.DEMO_CREDENTIALS[name]
        digest.update(b"\0" + name.encode() + b"\0" + value.encode())
    unkeyed = digest.hexdigest()
    names = {store_key(settings.routes[0], key) for key in (None, b"a" * 32, b"b" * 32)}
    assert len(names) == 3
    for name in names:
        assert name.startswith("cosmic:")
        assert name.removeprefix("cosmic:")[:24] not in unkeyed


async def test_restarted_proxy_reuses_a_valid_stored_token(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.json")
    clock = ManualClock()
    async with serve(emnify.make_app(clock=clock.now), emnify.LOGIN_PATH) as emu:
        auth = {"preset": "emnify", "username": "demo@example.com", "password": PASSWORD}
        settings = settings_for({"emnify": route(emu.url, **auth)})
        async with running_proxy(settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/emnify/api/v1/endpoint")).status == 200
        token = bearer(emu.state)
        text = file_text(path)
        assert token in text  # tokens are what the file is for...
        assert PASSWORD not in text  # ...and credentials are not
        assert emu.state.logins == 1

        clock.advance(60)
        async with running_proxy(settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/emnify/api/v1/endpoint")).status == 200
            assert bearer(emu.state) == token
        assert emu.state.logins == 1

        # A stored token that has expired meanwhile is not reused.
        clock.advance(240 * 60)
        async with running_proxy(settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/emnify/api/v1/endpoint")).status == 200
            assert bearer(emu.state) != token
        assert emu.state.logins == 2


async def test_changed_password_does_not_reuse_the_stored_token(tmp_path: Path) -> None:
    path = str(tmp_path / "tokens.json")
    clock = ManualClock()
    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        settings = settings_for({"cosmic": route(emu.url, **COSMIC)})
        async with running_proxy(settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/cosmic/x")).status == 200
        changed = settings_for({"cosmic": route(emu.url, **{**COSMIC, "password": "new-pass"})})
        async with running_proxy(changed, clock, FileStore(path)) as proxy:
            # The emulator still knows the old password: the new one must be tried, and fail.
            assert (await proxy.get("/cosmic/x")).status == 502
        assert (emu.state.login_attempts, emu.state.logins) == (2, 1)


async def test_real_restart_with_sigterm_logs_in_once(tmp_path: Path) -> None:
    pytest.importorskip("authproxy.config.load")
    from proc import start_proxy

    store = tmp_path / "state" / "tokens.json"
    config = tmp_path / "authproxy.yaml"
    env = {"T_COSMIC_EMAIL": cosmic.DEMO_CREDENTIALS["email"], "T_COSMIC_PASSWORD": PASSWORD}
    async with serve(cosmic.make_app(), cosmic.LOGIN_PATH) as emu:  # real time, like the process
        config.write_text(
            f"token_store: {store}\n"
            "routes:\n"
            "  cosmic:\n"
            f"    upstream: {emu.url}\n"
            "    auth:\n"
            "      preset: cosmic\n"
            "      email: ${T_COSMIC_EMAIL}\n"
            "      password: ${T_COSMIC_PASSWORD}\n"
        )
        args = ("serve", "--config", str(config), "--listen", "127.0.0.1:0")
        for run in (1, 2):
            process = await start_proxy(*args, env=env)
            try:
                async with (
                    ClientSession() as http,
                    http.get(process.url + "/cosmic/v1/buckets") as response,
                ):
                    assert response.status == 200, await response.text()
            finally:
                code = await process.stop()
            assert code == 0, process.text
            assert (emu.state.requests, emu.state.logins) == (run, 1)
            assert PASSWORD not in process.text
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert PASSWORD not in store.read_text()


async def test_token_stored_by_an_older_flow_is_not_reused(tmp_path: Path) -> None:
    """Same route, upstream and credentials (same key), but the new inject reads a new value."""
    path = str(tmp_path / "tokens.json")
    clock = ManualClock()
    login = {"path": cosmic.LOGIN_PATH, "body": {"email": "{email}", "password": "{password}"}}

    def custom(inject: dict[str, str], extra: dict[str, str]) -> dict[str, object]:
        return {
            "credentials": dict(cosmic.DEMO_CREDENTIALS),
            "login": login,
            "token": {"key": "token", "extra": extra} if extra else {"key": "token"},
            "expiry": {"from": "jwt_exp"},
            "inject": {"headers": inject},
        }

    async with serve(cosmic.make_app(clock=clock.now), cosmic.LOGIN_PATH) as emu:
        old = custom({"Authorization": "Bearer {token}"}, {})
        new = custom({"Authorization": "Bearer {token}", "X-Note": "{note}"}, {"note": "message"})
        old_settings = settings_for({"c": {"upstream": emu.url, "auth": old}})
        new_settings = settings_for({"c": {"upstream": emu.url, "auth": new}})
        assert store_key(old_settings.routes[0], None) == store_key(new_settings.routes[0], None)
        async with running_proxy(old_settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/c/x")).status == 200
        async with running_proxy(new_settings, clock, FileStore(path)) as proxy:
            assert (await proxy.get("/c/x")).status == 200
            assert emu.state.last_headers is not None
            assert emu.state.last_headers["X-Note"] == "Token created successfully."
        assert emu.state.logins == 2


def test_file_store_with_a_key_keeps_tokens_encrypted_and_a_wrong_key_reads_as_empty(
    tmp_path: Path,
) -> None:
    from authproxy.crypto import TokenCipher, generate_key

    path = tmp_path / "tokens.json"
    key = TokenCipher.from_key(generate_key())
    grant = Grant(MappingProxyType({"token": "tok-secret-value-123"}), 2e9, 1.7e9)
    FileStore(str(path), key).save("route:abc", grant)
    raw = path.read_bytes()
    assert b"tok-secret-value-123" not in raw
    assert not raw.startswith(b"{")
    assert FileStore(str(path), key).load("route:abc") == grant
    with capture_logs() as logs:
        other = FileStore(str(path), TokenCipher.from_key(generate_key()))
    assert other.load("route:abc") is None
    assert any("unreadable" in entry["event"] for entry in logs)


# ---- writes behind, coalesced ----------------------------------------------------------------


async def test_rotation_on_every_answer_writes_the_file_at_most_about_once_a_second(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tokens.json"
    clock = ManualClock()
    conf = cucumberstudio.CucumberStudioSettings(rotate_tokens=True)
    app = cucumberstudio.make_app(conf, clock=clock.now)
    async with serve(app, cucumberstudio.LOGIN_PATH) as emu:
        auth = {"preset": "cucumberstudio", **cucumberstudio.DEMO_CREDENTIALS}
        settings = settings_for({"cs": route(emu.url, **auth)}, token_store=str(path))
        versions: set[tuple[int, int]] = set()
        snapshots: list[str] = []
        watching = True

        async def watch() -> None:
            while watching:
                with contextlib.suppress(FileNotFoundError):
                    info = path.stat()
                    if (info.st_ino, info.st_mtime_ns) not in versions:
                        versions.add((info.st_ino, info.st_mtime_ns))
                        snapshots.append(path.read_text())
                await asyncio.sleep(0.002)

        watcher = asyncio.gather(watch())
        started = time.monotonic()
        async with running_proxy(settings, clock) as proxy:
            for i in range(300):
                assert (await proxy.get(f"/cs/api/projects/{i}")).status == 200
            elapsed = time.monotonic() - started
            writes_while_serving = len(versions)
        watching = False
        await watcher
        assert writes_while_serving <= elapsed / tokens.WRITE_INTERVAL + 2
        # Stopping wrote the last rotation: a restart continues with the current token.
        state = emu.state
        assert isinstance(state, cucumberstudio.CucumberStudioState)
        current = next(iter(state.clients.values())).token
        stored = read_grants(path, NullCipher())
        assert [grant.values["token"] for grant in stored.values()] == [current]
        async with running_proxy(settings, clock) as proxy:
            assert (await proxy.get("/cs/api/after-restart")).status == 200
        assert emu.state.logins == 1

        # A crash loses the last second of rotations: the file gives back an older token. The
        # upstream refuses it, and the proxy signs in again instead of locking anyone out.
        path.write_text(snapshots[0])
        async with running_proxy(settings, clock) as proxy:
            assert (await proxy.get("/cs/api/after-crash")).status == 200
        assert emu.state.logins == 2


@contextlib.contextmanager
def held_by_another_process(lock_path: str) -> Iterator[Callable[[], None]]:
    """The token file's write lock taken as `authproxy login` takes it; yields its release."""
    import fcntl

    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield lambda: fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


async def test_a_write_waits_for_another_process_holding_the_file_lock(tmp_path: Path) -> None:
    """`authproxy login` writes the proxy's file under `<file>.lock`: the proxy's own write (in
    a thread) waits for it and then keeps its entry, instead of replacing the file from an
    older read."""
    path = tmp_path / "tokens.json"
    tasks = Tasks()
    store = FileStore(str(path), tasks=tasks)
    try:
        with held_by_another_process(f"{path}.lock") as release:
            store.save("mine", grant("t-mine"))  # written behind, in a thread
            await asyncio.sleep(0.3)
            assert not path.exists()  # waiting for the lock, not writing from an older read
            write_grants(path, {"theirs": grant("t-theirs")}, NullCipher())
            release()
        await store.close()
    finally:
        await tasks.close()
    assert set(read_grants(path, NullCipher())) == {"mine", "theirs"}


def test_a_write_on_the_event_loop_never_waits_for_the_file_lock(tmp_path: Path) -> None:
    """Without a writer thread (a command, or a change during shutdown) the lock is tried once:
    a frozen holder costs the loop nothing, and the token is still written."""
    path = tmp_path / "tokens.json"
    store = FileStore(str(path))
    with held_by_another_process(f"{path}.lock"):
        started = time.monotonic()
        store.save("mine", grant("t-mine"))
        assert time.monotonic() - started < flock.WRITE_LOCK_WAIT  # not the frozen holder's wait
    assert set(read_grants(path, NullCipher())) == {"mine"}
