"""What auth needs from storage, as protocols; `stores/` implements them and never calls auth.

`Answer` is what it reads of the upstream's answers (the proxy's own response type fits it).
Two storage ports, because two kinds of store exist:
- `TokenStore`: this process's own copy of each route's grant (memory, or a file that survives
  restarts). Synchronous: a dict read on the hot path; writes may go behind.
- `SharedStore`: a store several processes reach (the workers' token file, Redis), with one login
  at a time across all of them. Every failure to reach it raises `StoreUnavailable`, so a process
  can fall back to logging in on its own and share later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from authproxy.auth.grant import Grant

Acceptable = Callable[[Grant], bool]


class Answer(Protocol):
    """What auth reads of an upstream's answer to a forwarded request."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


Ready = Callable[[], Awaitable[bool]]


class TokenStore(Protocol):
    def load(self, key: str) -> Grant | None: ...

    def save(self, key: str, grant: Grant) -> None: ...

    def delete(self, key: str) -> None: ...

    async def close(self) -> None:
        """Write whatever is still pending."""
        ...


class HeldLock(Protocol):
    """What entering a login lock gives: `held`, or False when `ready()` let the waiter go."""

    @property
    def held(self) -> bool: ...

    @property
    def fence(self) -> int:
        """The number `save` needs; raises RuntimeError when the lock is not held."""
        ...


class SharedStore(Protocol):
    """A token store several processes reach, with single-flight logins across them.

    Every failure to reach it raises `StoreUnavailable`. `save(fence=...)` must not let a holder
    whose lock was taken over overwrite the token of the holder after it; `delete(if_token=...)`
    forgets the grant only while its `token` is still that one.
    """

    async def load(self, key: str) -> Grant | None: ...

    async def save(self, key: str, grant: Grant, *, fence: int) -> bool: ...

    async def delete(self, key: str, *, if_token: str | None = None) -> bool: ...

    def login_lock(
        self, key: str, *, lease: float = ..., ready: Ready | None = None
    ) -> AbstractAsyncContextManager[HeldLock]: ...

    async def ping(self) -> bool: ...

    async def close(self) -> None: ...
