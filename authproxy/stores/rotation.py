"""Tokens written under an older `token_store_key`, found and moved to the new key's names.

A token's name is keyed (names.py), so a new key gives every route a new name, and a store read
under the new names only would look empty: every process would log in again, which
CucumberStudio's ten-token cap and emnify's lockout punish. With `token_store_key: [new, old,
...]` the stores are wrapped here: a name that is absent is looked up under the older keys' names
of the same route, and what is found moves to the new name. Every write seals under the first key
(crypto.py), so a moved entry is re-encrypted under the new key as it moves.

- The local store (memory, or this process's token file) moves the entry: it is this process's.
- A shared store copies it, only while the new name is still empty, so two processes moving at
  once keep the first copy. In Redis the old entry stays for replicas still running the old key
  list (a rolling restart) and expires with its token; the workers' token file drops it, since
  every worker of one `serve` has the same keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from authproxy.auth.grant import Grant
from authproxy.auth.ports import HeldLock, Ready, SharedStore, TokenStore


class MovableStore(SharedStore, Protocol):
    """A shared store that can write a name only while it is empty (for moving entries)."""

    async def save_if_absent(self, key: str, grant: Grant) -> bool: ...


class Aliases:
    """Each new name and the names the same route's token had under the older keys."""

    def __init__(self) -> None:
        self._older: dict[str, tuple[str, ...]] = {}

    def add(self, name: str, older: Sequence[str]) -> None:
        self._older[name] = tuple(older)

    def of(self, name: str) -> tuple[str, ...]:
        return self._older.get(name, ())

    def names(self) -> list[str]:
        return list(self._older)


class RotatedLocal:
    """A `TokenStore` that finds entries under older names and moves them to the new one."""

    def __init__(self, inner: TokenStore, aliases: Aliases) -> None:
        self.inner = inner
        self._aliases = aliases

    def load(self, key: str) -> Grant | None:
        grant = self.inner.load(key)
        if grant is not None:
            return grant
        for old in self._aliases.of(key):
            grant = self.inner.load(old)
            if grant is not None:
                self.inner.save(key, grant)
                self.inner.delete(old)
                return grant
        return None

    def save(self, key: str, grant: Grant) -> None:
        self.inner.save(key, grant)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        for old in self._aliases.of(key):
            self.inner.delete(old)

    async def close(self) -> None:
        await self.inner.close()


class RotatedShared:
    """A `SharedStore` that finds entries under older names and copies them to the new one."""

    def __init__(self, inner: MovableStore, aliases: Aliases, *, drop_older: bool) -> None:
        self.inner = inner
        self._aliases = aliases
        self._drop_older = drop_older

    async def load(self, key: str) -> Grant | None:
        grant = await self.inner.load(key)
        if grant is not None:
            return grant
        for old in self._aliases.of(key):
            grant = await self.inner.load(old)
            if grant is None:
                continue
            if not await self.inner.save_if_absent(key, grant):
                return await self.inner.load(key)  # another process moved it first
            if self._drop_older:
                await self.inner.delete(old)
            return grant
        return None

    async def migrate(self) -> None:
        """Move every aliased entry now, so a later start with the new key alone finds them
        even for a route that served no request meanwhile. Raises StoreUnavailable."""
        for name in self._aliases.names():
            await self.load(name)

    async def save(self, key: str, grant: Grant, *, fence: int) -> bool:
        return await self.inner.save(key, grant, fence=fence)

    async def delete(self, key: str, *, if_token: str | None = None) -> bool:
        """Forget the grant, under the older names too: a refused token must not be picked up
        from there by a process still on the old key."""
        deleted = await self.inner.delete(key, if_token=if_token)
        for old in self._aliases.of(key):
            await self.inner.delete(old, if_token=if_token)
        return deleted

    def login_lock(
        self, key: str, *, lease: float = 10.0, ready: Ready | None = None
    ) -> AbstractAsyncContextManager[HeldLock]:
        return self.inner.login_lock(key, lease=lease, ready=ready)

    async def ping(self) -> bool:
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()
