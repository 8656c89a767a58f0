"""The token file shared by the workers of one `serve --workers N`: N workers, one login.

`FileTokenStore` gives the token file the `SharedStore` protocol that `SharedTokens` drives, so
workers coordinate through it the way replicas coordinate through Redis:

* Each write re-reads the file and replaces it atomically (temp file, fsync, rename) under an
  exclusive `flock` on `<path>.lock`, held for milliseconds: readers never see half a file, and
  two writers never lose each other's entries. The write (with its fsync) runs in a thread, off
  the event loop; reads are small and stay on it.
  Every write goes through here: a `FileStore` per worker would rewrite the whole file from its
  own, older copy.
* The login lock of one key is a `flock` on a file of its own, `<path>.<key>.lock`, so a login
  hanging on one upstream does not hold up another route's login in the other workers.
* No lease and no fencing: the kernel releases a flock when its holder dies, and a living holder
  cannot lose it, so a stalled holder can never overwrite a newer token. The fence is always 0.
* Waiting never blocks the event loop: `LOCK_EX | LOCK_NB` is polled with short jittered sleeps
  (a thread blocked in `flock` could not be cancelled at shutdown), and a login waiter leaves
  without the lock once `ready()` reports a usable token.
* A corrupt or undecryptable file reads as empty, with one warning, and the next write replaces
  it. A file-system failure (unwritable directory) is `StoreUnavailable`: the token manager then
  logs in on its own and publishes later, as when Redis is down.

Lock files are never deleted: a waiter may hold the old inode open, and unlinking it would let
two processes "hold" the lock at once.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import structlog

from authproxy.auth.grant import Grant
from authproxy.auth.ports import Ready
from authproxy.crypto import Cipher
from authproxy.errors import StoreUnavailable
from authproxy.stores.lock_file import WRITE_LOCK_WAIT as WRITE_LOCK_WAIT  # re-exported
from authproxy.stores.lock_file import WRITE_POLL, open_lock, try_lock
from authproxy.stores.token_file import UNREADABLE, read_grants, write_grants

log = structlog.get_logger("authproxy.stores.flock")

LOGIN_POLL = (0.02, 0.05)  # seconds between a login waiter's attempts, drawn uniformly
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


class FileTokenStore:
    """Grants in the JSON token file at `path` (the `FileStore` format), sealed with `cipher`."""

    def __init__(self, path: str | Path, cipher: Cipher) -> None:
        self.path = Path(path)
        self._cipher = cipher
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._warned = False

    async def load(self, key: str) -> Grant | None:
        """The grant stored now (re-read on every call), or None."""
        # Read on the loop: a small file, read in microseconds, and waiters poll it every few
        # tens of milliseconds. Sent to threads, those reads crowded the default executor under
        # load, and the lock holder's write waited behind them past the writers' patience.
        return self._read().get(key)

    async def save(self, key: str, grant: Grant, *, fence: int) -> bool:
        """Store `grant`; always True. `fence` is ignored: a flock cannot be taken over."""
        del fence

        def put(grants: dict[str, Grant]) -> bool:
            grants[key] = grant
            return True

        return await self._update(put)

    async def save_if_absent(self, key: str, grant: Grant) -> bool:
        """Store `grant` only while `key` holds none; True if written."""

        def put(grants: dict[str, Grant]) -> bool:
            return grants.setdefault(key, grant) is grant

        return await self._update(put)

    async def delete(self, key: str, *, if_token: str | None = None) -> bool:
        """Forget the grant; with `if_token`, only while its `token` is still that one."""

        def drop(grants: dict[str, Grant]) -> bool:
            stored = grants.get(key)
            if stored is None or (if_token is not None and stored.values.get("token") != if_token):
                return False
            del grants[key]
            return True

        return await self._update(drop)

    def login_lock(
        self, key: str, *, lease: float = 0.0, ready: Ready | None = None
    ) -> FileLoginLock:
        """Single-flight for `key` across processes; `lease` is ignored (see the module doc)."""
        del lease
        name = f"{self.path.name}.{_UNSAFE.sub('-', key)}.lock"
        return FileLoginLock(self.path.with_name(name), ready)

    async def ping(self) -> bool:
        try:
            os.close(open_lock(self._lock_path))
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        """Nothing to close: every lock file is closed as soon as it is released."""

    def _read(self) -> dict[str, Grant]:
        try:
            grants = read_grants(self.path, self._cipher)
        except PermissionError as error:
            raise StoreUnavailable(f"token file {self.path} unreadable: {error.strerror}") from None
        except UNREADABLE as error:
            if not self._warned:
                self._warned = True
                log.warning(
                    "shared token file unreadable; treating it as empty until it is rewritten",
                    path=str(self.path),
                    error=type(error).__name__,
                )
            return {}
        self._warned = False
        return grants

    async def _update(self, change: Callable[[dict[str, Grant]], bool]) -> bool:
        """Read, `change`, write back if it says so: one step for every process (write lock)."""
        fd = open_lock(self._lock_path)
        try:
            deadline = time.monotonic() + WRITE_LOCK_WAIT
            while not try_lock(fd, self._lock_path):
                if time.monotonic() > deadline:
                    raise StoreUnavailable(f"token file lock {self._lock_path} is not released")
                await asyncio.sleep(random.uniform(*WRITE_POLL))
            # The lock is held only for this read and write, done in a thread so that the
            # fsync does not stall the event loop.
            return await asyncio.to_thread(self._read_change_write, change)
        finally:
            os.close(fd)  # releases the flock

    def _read_change_write(self, change: Callable[[dict[str, Grant]], bool]) -> bool:
        grants = self._read()
        if not change(grants):
            return False
        try:
            write_grants(self.path, grants, self._cipher)
        except OSError as error:
            raise StoreUnavailable(
                f"token file {self.path} not writable: {error.strerror}"
            ) from None
        return True


class FileLoginLock:
    """A `flock` on one key's lock file, an async context manager (as `redis_lock.LoginLock`)."""

    def __init__(self, path: Path, ready: Ready | None) -> None:
        self.path = path
        self.held = False
        self._ready = ready
        self._fd: int | None = None

    @property
    def fence(self) -> int:
        if not self.held:
            raise RuntimeError("the login lock is not held; load the token instead")
        return 0

    async def __aenter__(self) -> FileLoginLock:
        fd = open_lock(self.path)
        try:
            while not try_lock(fd, self.path):
                if self._ready is not None and await self._ready():
                    os.close(fd)
                    return self
                await asyncio.sleep(random.uniform(*LOGIN_POLL))
        except BaseException:
            os.close(fd)
            raise
        self._fd, self.held = fd, True
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the flock
            self._fd, self.held = None, False
