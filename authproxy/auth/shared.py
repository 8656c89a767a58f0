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

from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from authproxy.auth.clock import Clock
from authproxy.auth.grant import Grant
from authproxy.auth.ports import Acceptable, SharedStore
from authproxy.errors import StoreUnavailable
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.auth")

# A lease well under 15 s: a dead holder blocks others for at most this long, and the holder
# extends it every third of it while a slow login is still running.
LOCK_LEASE = 6.0
PUBLISH_RETRY_SECONDS = 2.0


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

    async def put(self, key: str, record: Grant) -> None:
        """Keep a record outside the login lock (a hold, `holds.py`): its name is its own, and
        fence 0 never loses to a token's fence, which lives under the token's name."""
        await self._store.save(key, record, fence=0)

    async def drop(self, key: str) -> None:
        await self._store.delete(key)


def _lives_longer(a: Grant, b: Grant) -> bool:
    if a.expires_at is None:
        return b.expires_at is None
    return b.expires_at is None or a.expires_at >= b.expires_at


class RouteSharing:
    """One route's use of the shared store, for its token manager.

    - `obtain`: a grant someone else shared, or this process's own login under the store's lock;
      when the store does not answer, a login here, shared once it is back (`publish later`).
    - `forget`: the upstream refused a token; no process takes it from the store again.
    - `go_private`: the upstream rotated a token on an ordinary answer (devise_token_auth). One
      rotating session cannot be shared, each rotation would refuse the other processes' copies,
      so from then on this process keeps a session of its own and leaves the store alone.
    """

    def __init__(
        self,
        route: str,
        key: str,
        shared: SharedTokens,
        *,
        current: Callable[[], Grant | None],
        adopt: Callable[[Grant], None],
        acceptable: Acceptable,
        clock: Clock,
        tasks: Tasks,
    ) -> None:
        self._route = route
        self._key = key
        self._shared = shared
        self._current = current
        self._adopt = adopt
        self._clock = clock
        self._tasks = tasks
        self._base_acceptable = acceptable
        self._down = False
        self._publishing = False
        self.private = False
        # Tokens the upstream refused: never taken back from the shared store.
        self._refused: deque[str] = deque(maxlen=4)

    def go_private(self) -> None:
        if not self.private:
            self.private = True
            log.info(
                "the upstream rotates tokens on its answers; this process keeps a session of "
                "its own",
                route=self._route,
            )

    async def obtain(self, log_in: Callable[[], Awaitable[Grant]]) -> tuple[Grant, bool]:
        """A new grant and whether this process logged in for it (False: another one did)."""
        if self.private:
            return await log_in(), True
        try:
            outcome = await self._shared.obtain(self._key, self._acceptable, log_in)
        except StoreUnavailable:
            # No request fails only because the shared store is down: log in here, share later.
            self._unreachable()
            grant = await log_in()
            self._publish_later()
            return grant, True
        if self._down:
            self._down = False
            log.info("shared token store reachable again", route=self._route)
        if not outcome.published:
            self._unreachable()
            self._publish_later()
        return outcome.grant, outcome.logged_in

    async def forget(self, token: str) -> None:
        self._refused.append(token)
        if self.private:
            return
        try:
            await self._shared.forget(self._key, token)
        except StoreUnavailable:
            self._unreachable()

    def keep_record(self, key: str, record: Grant | None) -> None:
        """Share (or with None, forget) a record such as a hold, in the background; a store that
        does not answer loses it, as the hold then only holds in this process."""

        async def write() -> None:
            try:
                await (self._shared.drop(key) if record is None else self._shared.put(key, record))
            except StoreUnavailable:
                self._unreachable()

        self._tasks.spawn(write(), name=f"hold-record:{self._route}")

    def _acceptable(self, grant: Grant) -> bool:
        """Whether a grant found in the shared store can be used instead of logging in."""
        if not self._base_acceptable(grant) or grant.values.get("token") in self._refused:
            return False
        # Renewing: only a different token than the one held now is of any help.
        current = self._current()
        return current is None or grant.values != current.values

    def _unreachable(self) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "shared token store unreachable; logging in locally and sharing the token later",
                route=self._route,
            )

    def _publish_later(self) -> None:
        if not self._publishing:
            self._publishing = True
            self._tasks.spawn(self._publish_when_back(), name=f"publish:{self._route}")

    async def _publish_when_back(self) -> None:
        """Retry sharing the held grant until the store answers; adopt a better one found there."""
        try:
            while (grant := self._current()) is not None:
                await self._clock.sleep_until(self._clock.now() + PUBLISH_RETRY_SECONDS)
                if self._current() is not grant:
                    continue
                try:
                    shared = await self._shared.publish(self._key, grant, self._acceptable)
                except StoreUnavailable:
                    continue
                if shared is not grant and self._current() is grant:
                    self._adopt(shared)
                self._down = False
                log.info("token shared again after the store came back", route=self._route)
                return
        finally:
            self._publishing = False
