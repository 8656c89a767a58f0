"""The replicas' login lock in Redis: one holder per key, a lease it extends, a fence to save with.

Keys: `authproxy:lock:<key>` (the holder's random id, with a lease) and `authproxy:fence:<key>` (a
counter bumped on every acquisition; `RedisTokenStore.save` writes only with a fence at least the
stored one).

* Waiting: waiters poll `SET NX` every 50-100 ms (jittered so replicas do not move in step) and
  leave early, without the lock, once `ready()` says a usable token arrived. Waiters never give up:
  a holder that dies stops extending its lease, and the next poll after it runs out wins.
* Lease: the holder extends it every lease/3 while the body runs, so a slow login keeps the lock
  (oauth2-proxy's fixed 2 s lease does not); extension and release only touch a lock still ours.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import structlog
from redis.asyncio import Redis

from authproxy.errors import StoreUnavailable
from authproxy.tasks import spawn

log = structlog.get_logger("authproxy.stores.redis")

POLL_INTERVAL = (0.05, 0.1)  # seconds between a waiter's attempts, drawn uniformly

# The lock and its fence in one step: a crash between the two cannot leave a lock without one.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

Call = Callable[[Awaitable[Any]], Awaitable[Any]]


class LockCommands:
    """The lock's scripts, registered once on the store's client; `call` runs each one and turns
    every Redis failure into `StoreUnavailable`, as the store's own commands do."""

    def __init__(self, redis: Redis, call: Call, prefix: str) -> None:
        self._call = call
        self._prefix = prefix
        self._acquire = redis.register_script(_ACQUIRE)
        self._extend = redis.register_script(_EXTEND)
        self._release = redis.register_script(_RELEASE)

    def names(self, key: str) -> list[str]:
        """The lock's name and its fence's name, for `key`."""
        return [f"{self._prefix}:lock:{key}", f"{self._prefix}:fence:{key}"]

    async def acquire(self, names: list[str], owner: str, lease_ms: int) -> int:
        """The new fence if the lock was free and is now `owner`'s; 0 if someone holds it."""
        return int(await self._call(self._acquire(keys=names, args=[owner, lease_ms])) or 0)

    async def extend(self, lock: str, owner: str, lease_ms: int) -> bool:
        return bool(await self._call(self._extend(keys=[lock], args=[owner, lease_ms])))

    async def release(self, lock: str, owner: str) -> None:
        await self._call(self._release(keys=[lock], args=[owner]))


class LoginLock:
    """Distributed single-flight for one key, as an async context manager.

    Entering waits until this replica holds the lock (`held`, with `fence` for `save`) or until
    `ready()` reports a usable token (`held` False: load it, don't log in). Redis failures raise
    `StoreUnavailable` from entering; on exit the lock is released, and a release that fails is
    only logged, since the lease ends it anyway.
    """

    def __init__(
        self,
        commands: LockCommands,
        key: str,
        lease: float,
        ready: Callable[[], Awaitable[bool]] | None,
    ) -> None:
        self.key = key
        self.held = False
        self.lost = False  # set when extending found the lock gone: our save may be refused
        self._commands = commands
        self._names = commands.names(key)
        self._lease_ms = max(1, int(lease * 1000))
        self._ready = ready
        self._owner = secrets.token_hex(16)
        self._fence = 0
        self._renewal: asyncio.Task[None] | None = None

    @property
    def fence(self) -> int:
        if not self.held:
            raise RuntimeError("the login lock is not held; load the token instead")
        return self._fence

    async def __aenter__(self) -> LoginLock:
        while True:
            fence = await self._commands.acquire(self._names, self._owner, self._lease_ms)
            if fence:
                self.held, self._fence = True, fence
                self._renewal = spawn(self._renew(), name=f"login-lock-renewal:{self.key}")
                return self
            if self._ready is not None and await self._ready():
                return self
            await asyncio.sleep(random.uniform(*POLL_INTERVAL))

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self.held:
            return
        self.held = False
        if (renewal := self._renewal) is not None:
            renewal.cancel()
            # `wait`, not `await renewal`: our own cancellation must still propagate. A failure
            # of the renewal was logged by `spawn` when it happened.
            await asyncio.wait([renewal])
            self._renewal = None
        try:
            await self._commands.release(self._names[0], self._owner)
        except StoreUnavailable as unreleased:
            log.warning(
                "could not release login lock; its lease will end it",
                key=self.key,
                error=str(unreleased),
            )

    async def _renew(self) -> None:
        every = self._lease_ms / 3000
        while True:
            await asyncio.sleep(every)
            try:
                extended = await self._commands.extend(self._names[0], self._owner, self._lease_ms)
            except StoreUnavailable as failure:
                log.warning("could not extend login lock", key=self.key, error=str(failure))
                continue
            if not extended:
                self.lost = True
                log.warning(
                    "login lock lost: its lease ran out before it was extended", key=self.key
                )
                return
