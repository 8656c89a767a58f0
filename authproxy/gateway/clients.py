"""Who is calling: client keys checked in constant time, route permissions, per-client rate limits
(counted in gateway/rates.py, shared by workers and replicas).

A key arrives as `X-Authproxy-Key` (which wins when both are sent) or `Authorization: Bearer`.
Only SHA-256 digests are held, and every configured digest is compared on every check, so the
time taken says nothing about which client, if any, was close.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from authproxy.gateway.rates import ClientRates, LocalRates
from authproxy.settings import ClientSpec

KEY_HEADER = "X-Authproxy-Key"


@dataclass(frozen=True, slots=True)
class Caller:
    """An identified client and the request header that carried its key (removed upstream)."""

    client: ClientSpec
    carrier: str


class ClientGate:
    """The clients of one config; `rates` outlive it (a reload keeps what each client used)."""

    def __init__(self, clients: tuple[ClientSpec, ...], rates: ClientRates | None = None) -> None:
        self._clients = clients
        self._rates = rates if rates is not None else ClientRates(LocalRates())

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

    async def retry_after(self, client: ClientSpec) -> float:
        """0 when the client may proceed now, else seconds until its rate limit lets it."""
        if client.rate_limit is None:
            return 0.0
        return await self._rates.retry_after(client.name, client.rate_limit)
