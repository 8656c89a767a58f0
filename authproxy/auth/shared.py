"""Tokens shared between proxy processes: one login per token lifetime, however many replicas.

`SharedTokens` wraps a store that several processes reach with the one protocol the token manager
needs: take a usable token someone else obtained, or log in under a cross-process lock and publish
the result. Every store failure surfaces as `StoreUnavailable`, so the manager can fall back to
logging in on its own and publish later.

Two stores speak `auth.ports.SharedStore`: `stores.redis.RedisTokenStore` (replicas on several
hosts; a lock with a lease and a fence) and `stores.flock.FileTokenStore` (the workers of one
`serve --workers N`; a `flock`, which the kernel releases when its holder dies).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from authproxy.auth.grant import Grant
from authproxy.auth.ports import Acceptable, SharedStore
from authproxy.errors import StoreUnavailable

# A lease well under 15 s: a dead holder blocks others for at most this long, and the holder
# extends it every third of it while a slow login is still running.
LOCK_LEASE = 6.0


@dataclass(frozen=True, slots=True)
class Outcome:
    """The grant to use; `published` False means it still has to reach the shared store."""

    grant: Grant
    published: bool
    logged_in: bool


class SharedTokens:
    def __init__(self, store: SharedStore) -> None:
        self._store = store

    async def obtain(
        self, key: str, acceptable: Acceptable, log_in: Callable[[], Awaitable[Grant]]
    ) -> Outcome:
        """A usable shared grant, or one new login by whichever process gets the lock first.

        Raises StoreUnavailable only before a login happened: a login that succeeded is never
        thrown away because publishing it failed.
        """

        async def ready() -> bool:
            stored = await self._store.load(key)
            return stored is not None and acceptable(stored)

        while True:
            stored = await self._store.load(key)
            if stored is not None and acceptable(stored):
                return Outcome(stored, published=True, logged_in=False)
            async with self._store.login_lock(key, lease=LOCK_LEASE, ready=ready) as lock:
                if not lock.held:
                    continue  # someone else's login finished while we waited: read it
                stored = await self._store.load(key)
                if stored is not None and acceptable(stored):
                    return Outcome(stored, published=True, logged_in=False)
                grant = await log_in()
                try:
                    await self._store.save(key, grant, fence=lock.fence)
                except StoreUnavailable:
                    return Outcome(grant, published=False, logged_in=True)
                return Outcome(grant, published=True, logged_in=True)

    async def publish(self, key: str, grant: Grant, acceptable: Acceptable) -> Grant:
        """Share a grant obtained while the store was down, unless a better one is there now."""
        async with self._store.login_lock(key, lease=LOCK_LEASE) as lock:
            stored = await self._store.load(key)
            if stored is not None and acceptable(stored) and _lives_longer(stored, grant):
                return stored
            await self._store.save(key, grant, fence=lock.fence)
            return grant

    async def forget(self, key: str, token: str) -> None:
        """The upstream refused `token`: no process should pick it up from the store again."""
        await self._store.delete(key, if_token=token)


def _lives_longer(a: Grant, b: Grant) -> bool:
    if a.expires_at is None:
        return b.expires_at is None
    return b.expires_at is None or a.expires_at >= b.expires_at
