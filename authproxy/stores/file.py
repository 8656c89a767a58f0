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
import os
import stat
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import structlog

from authproxy.auth.grant import Grant
from authproxy.crypto import Cipher, NullCipher
from authproxy.stores.codec import BAD_GRANT, grant_from_document, grant_to_document, seal, unseal
from authproxy.stores.memory import MemoryStore
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.stores.file")

FILE_VERSION = 1
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
        for key, grant in self._merged({}, _quiet_read(self.path, self._cipher)).items():
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
            deleted = dict(self._deleted)
            try:
                merged = self._merged(grants, _quiet_read(self.path, self._cipher))
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


def _quiet_read(path: Path, cipher: Cipher) -> dict[str, Grant]:
    """The file's grants for a merge; {} when unreadable (reported when the store opened)."""
    try:
        return read_grants(path, cipher)
    except UNREADABLE:
        return {}


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
            if hasattr(os, "fchmod"):  # POSIX; on Windows mkstemp already made it private
                os.fchmod(handle.fileno(), 0o600)
            handle.write(seal(document, cipher))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


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
