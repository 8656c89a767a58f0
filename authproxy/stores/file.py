"""Tokens in a JSON file that survives restarts, for one process.

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
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from authproxy.auth.grant import Grant
from authproxy.crypto import Cipher, NullCipher
from authproxy.stores.lock_file import write_lock_held
from authproxy.stores.memory import MemoryStore
from authproxy.stores.token_file import UNREADABLE, read_grants, read_grants_quietly, write_grants
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.stores.file")

WRITE_INTERVAL = 1.0


class FileStore(MemoryStore):
    """A MemoryStore mirrored to a file.

    With `tasks` (a running proxy), changes are written behind, coalesced (module docstring);
    without (a command that only reads, a test), each change is written at once. Workers of one
    `serve --workers N` share the file through `flock.FileTokenStore` instead.

    Another process may write the file too (`authproxy login`): `load` takes up what it wrote
    when the file changed, and a write keeps its entries, the newer of two grants winning, so
    neither loses the other's tokens.
    """

    def __init__(self, path: str, cipher: Cipher | None = None, tasks: Tasks | None = None):
        super().__init__()
        self.path = Path(path)
        self._cipher: Cipher = cipher or NullCipher()
        self._grants.update(self._read())
        self._seen = self._stamp()  # the file as last read or written here
        # Keys deleted here, with the obtained_at of the grant deleted: the file's older copy
        # is not taken back up, nor kept by the next write.
        self._deleted: dict[str, float] = {}
        self._tasks = tasks
        self._dirty = False
        self._closing = False
        self._wake = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self._last_write = float("-inf")
        # A write in a thread may still run when `close` writes the last changes: one at a time,
        # so an older copy can never replace a newer one.
        self._write_lock = threading.Lock()
        # Between processes (`authproxy login` writing the same file), the flock that the
        # workers' shared file uses: a read-merge-write of one never interleaves another's.
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._warned = False

    def load(self, key: str) -> Grant | None:
        self._follow()
        return super().load(key)

    def save(self, key: str, grant: Grant) -> None:
        super().save(key, grant)
        self._changed()

    def delete(self, key: str) -> None:
        if (grant := self._grants.get(key)) is not None:
            self._deleted[key] = grant.obtained_at
            super().delete(key)
            self._changed()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            status = self.path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def _follow(self) -> None:
        """Take up the grants another process wrote since the file was last read or written."""
        if (stamp := self._stamp()) == self._seen:
            return
        self._seen = stamp
        for key, grant in self._merged({}, read_grants_quietly(self.path, self._cipher)).items():
            if (mine := self._grants.get(key)) is None or grant.obtained_at > mine.obtained_at:
                self._grants[key] = grant

    def _merged(self, mine: Mapping[str, Grant], theirs: Mapping[str, Grant]) -> dict[str, Grant]:
        """`mine` with `theirs` kept where newer, less what was deleted here."""
        merged = dict(mine)
        for key, grant in theirs.items():
            if grant.obtained_at <= self._deleted.get(key, float("-inf")):
                continue
            if (held := merged.get(key)) is None or grant.obtained_at > held.obtained_at:
                merged[key] = grant
        return merged

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
            # On the event loop (or a command's only thread): the file lock is tried, never
            # waited for; a holder keeps it for milliseconds, and this write then goes ahead.
            self._write(self._grants, lock_wait=0.0)
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

    def _write(self, grants: Mapping[str, Grant], lock_wait: float | None = None) -> None:
        with self._write_lock:
            deleted = dict(self._deleted)
            try:
                with write_lock_held(self._lock_path, lock_wait):
                    merged = self._merged(grants, read_grants_quietly(self.path, self._cipher))
                    write_grants(self.path, merged, self._cipher)
                    self._seen = self._stamp()
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
            for key, obtained in deleted.items():  # gone from the file now
                if self._deleted.get(key) == obtained:
                    del self._deleted[key]
