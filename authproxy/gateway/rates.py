"""One rate limit per client, however many workers and replicas serve it.

The limit is GCRA (the generic cell rate algorithm), a token bucket kept as one number per client:
its theoretical arrival time (TAT). A request at `now` is allowed when `max(TAT, now) + 1/rate`
is at most `burst/rate` ahead of now, and then moves the TAT there. One number is what makes it
shareable: a read, a compare and a write, done atomically wherever the TAT lives:
- one process: a dict (`LocalRates`);
- the workers of one `serve --workers N`: a table in memory the supervisor shares with them,
  under a lock (`RateTable`);
- replicas on one Redis: a Lua script on Redis's own clock (stores/redis_rates.py), tried first
  whenever Redis is the token store (`ClientRates`). While Redis does not answer, each host
  limits on its own (its table, or its dict), and says so in a warning.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from authproxy.errors import StoreUnavailable
from authproxy.settings import RateLimit

log = structlog.get_logger("authproxy.gateway.rates")

# Seconds between attempts to reach a shared rate store that did not answer.
REMOTE_RETRY = 5.0


def gcra(tat: float, now: float, limit: RateLimit) -> tuple[float, float]:
    """(the new TAT, 0) for an allowed request; (the TAT as it was, seconds to wait) if not."""
    interval = 1.0 / limit.rate
    after = max(tat, now) + interval
    over = after - now - limit.burst * interval
    if over > 0:
        return tat, over
    return after, 0.0


class Limiter(Protocol):
    def take(self, client: str, limit: RateLimit) -> float:
        """0 when `client` may proceed now (and it is counted), else seconds until it may."""
        ...


class RemoteLimiter(Protocol):
    async def take(self, client: str, limit: RateLimit) -> float:
        """As `Limiter.take`, shared by every replica; raises StoreUnavailable."""
        ...

    async def close(self) -> None: ...


class LocalRates:
    """The TATs of one process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tats: dict[str, float] = {}

    def take(self, client: str, limit: RateLimit) -> float:
        tat, wait = gcra(self._tats.get(client, 0.0), self._clock(), limit)
        self._tats[client] = tat
        return wait


_SLOT = struct.Struct("<Qd")  # a client's key (0: free) and its TAT
SLOTS = 4096
TABLE_SIZE = _SLOT.size * SLOTS


def create_rate_table() -> int:
    """A file descriptor of a zeroed table for `RateTable`, to be inherited by the workers.

    Anonymous memory (memfd) where Linux has it, else an unlinked temporary file: nothing on
    disk names it, and it goes away with the last process that holds it.
    """
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("authproxy-rates", 0)  # without MFD_CLOEXEC: inherited on purpose
    else:  # pragma: no cover - macOS and the BSDs
        handle, path = tempfile.mkstemp(prefix="authproxy-rates-")
        os.unlink(path)
        fd = handle
    os.ftruncate(fd, TABLE_SIZE)
    return fd


class RateTable:
    """TATs in memory shared by the workers of one supervisor, an open-addressed table keyed by
    a hash of the client name. Each take holds a POSIX record lock on the table for a few
    microseconds: record locks belong to a process, so they exclude the other workers even
    though all of them inherited one open file (a `flock` there would be shared by all)."""

    def __init__(self, fd: int, clock: Callable[[], float] = time.monotonic) -> None:
        import fcntl  # here, not at the top: POSIX only, and `check` must import on Windows

        self._lockf, self._exclusive, self._unlock = fcntl.lockf, fcntl.LOCK_EX, fcntl.LOCK_UN
        self._fd = fd
        self._map = mmap.mmap(fd, TABLE_SIZE)
        self._clock = clock
        self._slots: dict[str, int] = {}
        self._fallback = LocalRates(clock)  # for a client beyond a full table

    def take(self, client: str, limit: RateLimit) -> float:
        self._lockf(self._fd, self._exclusive)
        try:
            slot = self._slots.get(client)
            if slot is None:
                slot = self._find(client)
                if slot is None:
                    return self._fallback.take(client, limit)
                self._slots[client] = slot
            key, stored = _SLOT.unpack_from(self._map, slot)
            tat, wait = gcra(stored, self._clock(), limit)
            _SLOT.pack_into(self._map, slot, key, tat)
            return wait
        finally:
            self._lockf(self._fd, self._unlock)

    def _find(self, client: str) -> int | None:
        """The slot of `client`, claimed if new (the lock is held); None if the table is full."""
        digest = hashlib.blake2b(client.encode(), digest_size=8).digest()
        key = int.from_bytes(digest, "little") or 1
        start = key % SLOTS
        for probe in range(SLOTS):
            offset = ((start + probe) % SLOTS) * _SLOT.size
            found, _tat = _SLOT.unpack_from(self._map, offset)
            if found == key:
                return offset
            if found == 0:
                _SLOT.pack_into(self._map, offset, key, 0.0)
                return offset
        return None

    def close(self) -> None:
        self._map.close()


class ClientRates:
    """A process's rate limits: `remote` (Redis) when set and answering, else `local`."""

    def __init__(self, local: Limiter) -> None:
        self.local = local
        self.remote: RemoteLimiter | None = None
        self._down_until = 0.0

    async def retry_after(self, client: str, limit: RateLimit) -> float:
        remote = self.remote
        if remote is None or time.monotonic() < self._down_until:
            return self.local.take(client, limit)
        try:
            wait = await remote.take(client, limit)
        except StoreUnavailable as error:
            if not self._down_until:
                log.warning(
                    "rate limits cannot be shared: Redis does not answer; each host limits its "
                    "clients on its own until it does",
                    error=str(error),
                )
            self._down_until = time.monotonic() + REMOTE_RETRY
            return self.local.take(client, limit)
        if self._down_until:
            self._down_until = 0.0
            log.info("rate limits are shared through Redis again")
        return wait
