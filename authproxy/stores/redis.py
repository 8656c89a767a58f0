"""A token store shared by several proxy replicas through Redis, with a distributed login lock.

Replicas of a team gateway share one upstream account, and each login may evict another session
(devise_token_auth keeps ten clients) or count towards a lockout, so one replica logs in and the
others read its token. The caller's pattern:

    grant = await store.load(key)
    if not usable(grant):
        async with store.login_lock(key, ready=lambda: has_usable_token(store, key)) as lock:
            grant = await store.load(key)
            if not usable(grant):                       # nobody logged in while we waited
                grant = await log_in()
                await store.save(key, grant, fence=lock.fence)

Keys: `authproxy:token:<key>` (a hash: `fence`, `grant`); the lock's keys, its waiting and its
lease are `redis_lock.py`'s.

* Fencing: `save` writes only if its fence is at least the stored one, so a holder whose lease ran
  out while it was stalled cannot overwrite the token of the holder after it.

Every Redis failure is a `StoreUnavailable`, raised within the socket timeouts, so the caller can
fall back to logging in locally. The API is async; the token manager adapts it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import structlog
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from authproxy.auth.grant import Grant
from authproxy.crypto import Cipher
from authproxy.errors import StoreUnavailable
from authproxy.secrets import REGISTRY
from authproxy.stores.codec import open_grant, seal_grant
from authproxy.stores.redis_lock import LockCommands, LoginLock

log = structlog.get_logger("authproxy.stores.redis")

PREFIX = "authproxy"

# Write only if no stored fence is higher; the TTL (ms, 0 = none) outlives the token a little.
_SAVE = """
local stored = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0')
if tonumber(ARGV[1]) < stored then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1], 'grant', ARGV[2])
if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[3])
else redis.call('PERSIST', KEYS[1]) end
return 1
"""
# An entry moved from a name of an older key (stores/rotation.py): only while this name is empty.
_SAVE_IF_ABSENT = """
if redis.call('HEXISTS', KEYS[1], 'grant') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'grant', ARGV[1])
if tonumber(ARGV[2]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
"""
_DELETE_IF = """
if redis.call('HGET', KEYS[1], 'grant') == ARGV[1] then
  return redis.call('HDEL', KEYS[1], 'grant')
end
return 0
"""


class RedisTokenStore:
    """Grants in Redis, sealed with `cipher` (a `NullCipher` stores plain JSON) together with the
    name they are stored under (`tokens.seal_grant`): a value moved to another name reads as absent.

    `url` is `redis://` or `rediss://`, with any password in it. `timeout` bounds connecting and
    each command; `expiry_grace` keeps a grant that long past its expiry, so its refresh token
    stays usable, before Redis drops it.
    """

    def __init__(
        self, url: str, cipher: Cipher, *, timeout: float = 2.0, expiry_grace: float = 300.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"Redis URL scheme must be redis or rediss, not {parts.scheme!r}")
        if parts.password:
            REGISTRY.add(parts.password)
        self.where = f"{parts.hostname}:{parts.port or 6379}"
        self._cipher = cipher
        self._grace = expiry_grace
        self._warned: set[str] = set()
        # One retry on a connection error only: it replaces a pooled connection Redis closed (a
        # restart), while a timeout is not retried, so a dead server costs one `timeout`.
        self._redis = Redis.from_url(
            url,
            socket_connect_timeout=timeout,
            socket_timeout=timeout,
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )
        self._save = self._redis.register_script(_SAVE)
        self._save_if_absent = self._redis.register_script(_SAVE_IF_ABSENT)
        self._delete = self._redis.register_script(_DELETE_IF)
        self._locks = LockCommands(self._redis, self._call, PREFIX)

    async def load(self, key: str) -> Grant | None:
        """The stored grant, or None if absent, unreadable with our key, or malformed."""
        raw = await self._call(self._redis.hget(_name("token", key), "grant"))
        return None if raw is None else self._open(key, raw)

    async def save(self, key: str, grant: Grant, *, fence: int) -> bool:
        """Store `grant` unless a holder with a higher fence already did; True if written."""
        sealed = seal_grant(key, grant, self._cipher)
        written = self._save(keys=[_name("token", key)], args=[fence, sealed, self._ttl(grant)])
        return bool(await self._call(written))

    async def save_if_absent(self, key: str, grant: Grant) -> bool:
        """Store `grant` only while `key` holds none; True if written. Its fence stays as it is,
        so any lock holder's later save still wins."""
        sealed = seal_grant(key, grant, self._cipher)
        written = self._save_if_absent(keys=[_name("token", key)], args=[sealed, self._ttl(grant)])
        return bool(await self._call(written))

    def _ttl(self, grant: Grant) -> int:
        """Milliseconds Redis keeps the entry (0: for good): a little past the token's expiry."""
        if grant.expires_at is None:
            return 0
        return max(1000, int((grant.expires_at - time.time() + self._grace) * 1000))

    async def delete(self, key: str, *, if_token: str | None = None) -> bool:
        """Forget the grant; with `if_token`, only while its `token` is still that one.

        The fence stays, so an older lock holder cannot write its token back afterwards.
        """
        name = _name("token", key)
        if if_token is None:
            return bool(await self._call(self._redis.hdel(name, "grant")))
        raw = await self._call(self._redis.hget(name, "grant"))
        grant = None if raw is None else self._open(key, raw)
        if grant is None or grant.values.get("token") != if_token:
            return False
        # Lua cannot read the sealed token, but it can check that the sealed value we judged is
        # still the one stored: a newer save in between leaves the newer token alone.
        return bool(await self._call(self._delete(keys=[name], args=[raw])))

    def login_lock(
        self,
        key: str,
        *,
        lease: float = 10.0,
        ready: Callable[[], Awaitable[bool]] | None = None,
    ) -> LoginLock:
        """A lock for logging in to `key`'s upstream; see `LoginLock`."""
        return LoginLock(self._locks, key, lease, ready)

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()

    def _open(self, key: str, raw: bytes | str) -> Grant | None:
        text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes) else raw
        grant = open_grant(key, text, self._cipher, time.time())
        if grant is None:
            if key not in self._warned:
                self._warned.add(key)
                log.warning(
                    "stored token is not usable here (another key, another entry's value, an "
                    "older format or impossible values); ignoring it",
                    key=key,
                    store=self.where,
                )
            return None
        return grant

    async def _call(self, pending: Awaitable[Any]) -> Any:
        try:
            return await pending
        except (RedisError, OSError) as error:
            raise self._unavailable(error) from error

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"Redis token store {self.where} unavailable: {type(error).__name__}"
        )


def _name(kind: str, key: str) -> str:
    return f"{PREFIX}:{kind}:{key}"
