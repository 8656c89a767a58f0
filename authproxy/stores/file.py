"""Where tokens rest between requests and restarts: in memory, or in a JSON file.

The file holds tokens only, never passwords, under names made of the route name and a keyed hash
of its upstream and credentials (`store_key`), so changed credentials never pick up a stale token,
and a name cannot be used to test guesses of a password. It is written atomically (temp file,
fsync, rename) with mode 0600; a corrupt or unreadable file is a warning and a fresh start, an
entry with impossible values reads as absent, never a crash. A store that cannot be written falls
back to memory, loudly.

Writes are coalesced: an API that rotates its token on every answer would otherwise cost an
fsync per request on the event loop. At most one write a `WRITE_INTERVAL`, in a worker thread,
and whatever is pending at `close()`. A crash loses at most the last interval's changes; a token
the file then gives back stale is refused by the upstream and replaced (auth/manager.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import hmac
import json
import math
import os
import secrets
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import structlog

from authproxy.auth.grant import Grant
from authproxy.auth.ports import TokenStore
from authproxy.crypto import Cipher, NullCipher, TokenCipher, seal, unseal
from authproxy.settings import Route, TokenStoreSettings
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.stores.file")

FILE_VERSION = 1
WRITE_INTERVAL = 1.0

# A sealed grant's format (`seal_grant`); a value of another version reads as absent.
GRANT_VERSION = 2
# Stored times outside this span around now are tampering or corruption, never a real token: an
# `expires_at` of 1e308 would pin a token forever, and Infinity breaks every date shown for it.
TEN_YEARS = 10 * 365.25 * 24 * 3600
# How far another replica's clock may run ahead of ours when it stamps `obtained_at`.
CLOCK_SKEW = 300.0

# Names of tokens that never leave this process (the memory store): any key will do.
EPHEMERAL_NAME_KEY = secrets.token_bytes(32)
_NAME_CONTEXT = b"authproxy token store names v2"
NAME_ROUNDS = 100_000  # PBKDF2 rounds for names without a key: about 50 ms on a laptop core


def name_key_for(settings: TokenStoreSettings) -> bytes | None:
    """The key that names tokens in a store with `token_store_key`; None without one.

    Derived from the Fernet key rather than being it, so neither use can weaken the other.
    """
    if settings.key is None:
        return None
    return hmac.new(settings.key.reveal().encode(), _NAME_CONTEXT, hashlib.sha256).digest()


def store_key(route: Route, name_key: bytes | None) -> str:
    """`<route>:<digest>`, the name of the route's token: a new upstream, preset or credential
    gives a new name.

    The digest covers the credentials, and names are readable by whoever reads the store, so it
    must not be a fast unkeyed hash: that lets anyone who can list Redis keys test password guesses
    offline. With a key (`name_key_for`) it is HMAC-SHA256; a guess then needs the key. Without
    one it is PBKDF2-HMAC-SHA256: a salt kept beside the names would be read along with them, so
    what prices each guess is the work (~50 ms), paid here once per route and process (cached).
    Not scrypt: its 16 MiB of working memory stay in the process for good (OpenSSL's allocator
    keeps them), a sixth of a sidecar's footprint for a name.
    A key rotation can try the names of several keys: this is a function of (route, key).
    """
    material = _name_material(route)
    if name_key is None:
        digest = _slow_digest(material)
    else:
        digest = hmac.new(name_key, material, hashlib.sha256).hexdigest()
    return f"{route.name}:{digest[:32]}"


def _name_material(route: Route) -> bytes:
    auth = route.auth
    credentials: list[tuple[str, str]] = []
    preset = None
    if auth is not None:
        preset = auth.preset or "custom"
        credentials = [(name, auth.credentials[name].reveal()) for name in sorted(auth.credentials)]
    # JSON keeps the parts apart: no credential value can pass for a separator.
    return json.dumps([str(route.upstream), preset, credentials]).encode()


@functools.lru_cache(maxsize=256)
def _slow_digest(material: bytes) -> str:
    return hashlib.pbkdf2_hmac("sha256", material, _NAME_CONTEXT, NAME_ROUNDS, dklen=16).hex()


class MemoryStore:
    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}

    def load(self, key: str) -> Grant | None:
        return self._grants.get(key)

    def save(self, key: str, grant: Grant) -> None:
        self._grants[key] = grant

    def delete(self, key: str) -> None:
        self._grants.pop(key, None)

    async def close(self) -> None:
        return None


class FileStore(MemoryStore):
    """A MemoryStore mirrored to a file.

    With `tasks` (a running proxy), changes are written behind, coalesced (module docstring);
    without (a command that only reads, a test), each change is written at once. One process
    only: it rewrites the whole file from its own copy. Workers of one `serve --workers N`
    share the file through `file_shared.FileTokenStore` instead.
    """

    def __init__(self, path: str, cipher: Cipher | None = None, tasks: Tasks | None = None):
        super().__init__()
        self.path = Path(path)
        self._cipher: Cipher = cipher or NullCipher()
        self._grants.update(self._read())
        self._tasks = tasks
        self._dirty = False
        self._closing = False
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._last_write = float("-inf")
        # A write in a thread may still run when `close` writes the last changes: one at a time,
        # so an older copy can never replace a newer one.
        self._write_lock = threading.Lock()
        self._warned = False

    def save(self, key: str, grant: Grant) -> None:
        super().save(key, grant)
        self._changed()

    def delete(self, key: str) -> None:
        if key in self._grants:
            super().delete(key)
            self._changed()

    async def close(self) -> None:
        """Write what is pending now, without waiting out the interval."""
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            await asyncio.wait([self._writer])
        if self._dirty:
            self._dirty = False
            await asyncio.to_thread(self._write, dict(self._grants))

    def _changed(self) -> None:
        self._dirty = True
        if self._tasks is None or self._closing:
            self._dirty = False
            self._write(self._grants)
        elif self._writer is None:
            self._writer = self._tasks.spawn(self._write_behind(), name="token-file-writer")

    async def _write_behind(self) -> None:
        try:
            while self._dirty:
                wait = self._last_write + WRITE_INTERVAL - time.monotonic()
                if wait > 0 and not self._closing:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                self._dirty = False
                self._last_write = time.monotonic()
                await asyncio.to_thread(self._write, dict(self._grants))
        finally:
            self._writer = None

    def in_memory(self) -> MemoryStore:
        """A MemoryStore holding what this file held when it was read."""
        copy = MemoryStore()
        copy._grants.update(self._grants)
        return copy

    def _read(self) -> dict[str, Grant]:
        try:
            return read_grants(self.path, self._cipher)
        except UNREADABLE as error:
            log.warning(
                "token store unreadable; starting without stored tokens",
                path=str(self.path),
                error=type(error).__name__,
            )
            return {}

    def _write(self, grants: Mapping[str, Grant]) -> None:
        with self._write_lock:
            try:
                write_grants(self.path, grants, self._cipher)
            except OSError as error:
                if not self._warned:
                    self._warned = True
                    log.warning(
                        "could not write the token file; tokens will not survive a restart",
                        path=str(self.path),
                        error=type(error).__name__,
                    )
                return
            self._warned = False


# What `read_grants` raises for a file that exists but cannot be used.
UNREADABLE = (OSError, ValueError, KeyError, TypeError, AttributeError)


def read_grants(path: Path, cipher: Cipher) -> dict[str, Grant]:
    """The grants in a token file; {} when it does not exist. Raises one of `UNREADABLE`.

    An entry with impossible values is left out (it reads as absent, and the next write drops it).
    Every token read is masked in logs while its Grant exists: another process may have
    obtained it.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    document = unseal(text.strip(), cipher) if text.strip() else None
    if document is None:
        # Written with another key (or none): unreadable here, so treated as absent.
        raise ValueError("cannot be decrypted with the configured token_store_key")
    entries = document["tokens"]
    if not isinstance(entries, dict):
        raise TypeError("tokens")
    grants: dict[str, Grant] = {}
    now = time.time()
    for key, entry in entries.items():
        try:
            grants[str(key)] = grant_from_document(entry, now)
        except BAD_GRANT as error:
            log.warning(
                "stored token has impossible values; ignoring it",
                path=str(path),
                key=str(key),
                field=error.args[0] if error.args else type(error).__name__,
            )
    return grants


def write_grants(path: Path, grants: Mapping[str, Grant], cipher: Cipher) -> None:
    """Replace the token file atomically (temp file, fsync, rename), mode 0600."""
    document = {
        "version": FILE_VERSION,
        "tokens": {key: grant_to_document(grant) for key, grant in grants.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, temp = tempfile.mkstemp(prefix=".tokens-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(seal(document, cipher))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def grant_to_document(grant: Grant) -> dict[str, object]:
    return {
        "values": dict(grant.values),
        "expires_at": grant.expires_at,
        "obtained_at": grant.obtained_at,
    }


# What `grant_from_document` raises for an entry it refuses; the text names the field.
BAD_GRANT = (KeyError, TypeError, ValueError)


def grant_from_document(entry: object, now: float) -> Grant:
    """The grant `grant_to_document` wrote; raises one of `BAD_GRANT` for anything else.

    Times are checked against `now` (POSIX seconds): finite, and within ten years of it;
    `obtained_at` no later than now, give or take another replica's clock.
    """
    if not isinstance(entry, dict):
        raise TypeError("entry")
    values = entry["values"]
    if not isinstance(values, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in values.items()
    ):
        raise TypeError("values")
    expires_at = entry["expires_at"]
    if expires_at is not None:
        expires_at = _stored_time(expires_at, "expires_at", now - TEN_YEARS, now + TEN_YEARS)
    obtained_at = _stored_time(
        entry["obtained_at"], "obtained_at", now - TEN_YEARS, now + CLOCK_SKEW
    )
    return Grant(MappingProxyType(dict(values)), expires_at, obtained_at)


def _stored_time(value: object, field: str, earliest: float, latest: float) -> float:
    # bool is an int to Python, but `true` is no time; NaN and Infinity fail `isfinite`.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(field)
    if not (math.isfinite(value) and earliest <= value <= latest):
        raise ValueError(field)
    return float(value)


def seal_grant(name: str, grant: Grant, cipher: Cipher) -> str:
    """`grant` sealed with the name it is stored under and the format version.

    A Redis writer without the key can still move a sealed value from one name to another (one
    route's token to another route's upstream); the name inside then no longer matches, and
    `open_grant` refuses it. The expiry is inside too: it cannot be extended from outside.
    """
    return seal({"v": GRANT_VERSION, "key": name, "grant": grant_to_document(grant)}, cipher)


def open_grant(name: str, text: str, cipher: Cipher, now: float) -> Grant | None:
    """The grant `seal_grant` sealed under `name`; None for anything else: another key, another
    name, another version (an older proxy's entry: one login replaces it), impossible values."""
    document = unseal(text, cipher)
    if document is None or document.get("v") != GRANT_VERSION or document.get("key") != name:
        return None
    try:
        return grant_from_document(document.get("grant"), now)
    except BAD_GRANT:
        return None


def cipher_for(settings: TokenStoreSettings) -> Cipher:
    return NullCipher() if settings.key is None else TokenCipher.from_key(settings.key.reveal())


def warn_if_shared_directory(directory: Path) -> None:
    """Warn when others may write to the token file's directory: they could replace the file, or
    put a symlink where a lock file will be created (file_shared refuses to follow one)."""
    try:
        mode = directory.stat().st_mode
    except OSError:
        return  # a missing or unreadable directory is reported where the store is used
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        log.warning(
            "token store directory is writable by group or others; they can replace the tokens",
            path=str(directory),
            mode=f"{stat.S_IMODE(mode):04o}",
        )


def open_store(settings: TokenStoreSettings, tasks: Tasks | None = None) -> TokenStore:
    """The configured local store; an unwritable file falls back to memory with a warning.

    With a shared (Redis) store, each process keeps its own copy in memory. `tasks`: writes go
    behind, coalesced, as a running proxy needs (see `FileStore`).
    """
    if settings.kind in ("memory", "redis") or settings.path is None:
        return MemoryStore()
    store = FileStore(settings.path, cipher_for(settings), tasks)
    try:
        store.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = tempfile.NamedTemporaryFile(dir=store.path.parent, prefix=".probe-")  # noqa: SIM115
        probe.close()
    except OSError as error:
        if settings.explicit:
            log.warning(
                "token store directory is not writable; tokens will not survive a restart",
                path=settings.path,
                error=type(error).__name__,
            )
        else:
            log.warning(
                "default token store is not writable; keeping tokens in memory",
                path=settings.path,
                error=type(error).__name__,
            )
        return store.in_memory()
    return store
