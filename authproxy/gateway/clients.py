"""Who is calling: client keys checked in constant time, route permissions, per-client rate limits.

A key arrives as `X-Authproxy-Key` (which wins when both are sent) or `Authorization: Bearer`.
Only SHA-256 digests are held, and every configured digest is compared on every check, so the
time taken says nothing about which client, if any, was close.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from authproxy.settings import ClientSpec, RateLimit

KEY_HEADER = "X-Authproxy-Key"


@dataclass(frozen=True, slots=True)
class Caller:
    """An identified client and the request header that carried its key (removed upstream)."""

    client: ClientSpec
    carrier: str


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take` answers 0 or the seconds until one is due."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, limit: RateLimit, now: float) -> None:
        self._rate = limit.rate
        self._burst = float(limit.burst)
        self._tokens = float(limit.burst)
        self._stamp = now

    def take(self, now: float) -> float:
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class ClientGate:
    def __init__(
        self, clients: tuple[ClientSpec, ...], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clients = clients
        self._clock = clock
        now = clock()
        self._buckets = {
            c.name: TokenBucket(c.rate_limit, now) for c in clients if c.rate_limit is not None
        }

    @property
    def enabled(self) -> bool:
        return bool(self._clients)

    def identify(self, headers: Mapping[str, str]) -> Caller | None:
        """The client whose key the request carries, or None for a missing or wrong key."""
        key, carrier = headers.get(KEY_HEADER), KEY_HEADER
        if key is None:
            scheme, _, credentials = headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                return None
            key, carrier = credentials.strip(), "Authorization"
        # aiohttp decodes header bytes as UTF-8 with surrogateescape: encode them back the same
        # way, so a key that is not UTF-8 is simply a wrong key (401), never an exception (500).
        digest = hashlib.sha256(key.encode("utf-8", "surrogateescape")).digest()
        found: ClientSpec | None = None
        for client in self._clients:  # no early exit: constant work whoever matches
            if hmac.compare_digest(digest, client.key_sha256):
                found = client
        return None if found is None else Caller(found, carrier)

    @staticmethod
    def allows(client: ClientSpec, route: str) -> bool:
        return client.routes is None or route in client.routes

    def retry_after(self, client: ClientSpec) -> float:
        """0 when the client may proceed now, else seconds until its rate limit lets it."""
        bucket = self._buckets.get(client.name)
        return 0.0 if bucket is None else bucket.take(self._clock())
