"""Client rate limits shared by every replica on one Redis: GCRA in one Lua script.

The script reads a client's theoretical arrival time, decides, and writes it back in one atomic
step (gateway/rates.py explains the algorithm), on Redis's own clock (`TIME`), so replicas whose
clocks differ still share one limit. A key lives as long as it matters (until its TAT is past)
plus a second. The connection has short timeouts: this is on the path of every request of a
limited client, and a Redis that does not answer is a `StoreUnavailable` within half a second,
after which the caller limits locally for a while instead of asking again at once.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.exceptions import RedisError

from authproxy.errors import StoreUnavailable
from authproxy.secrets import REGISTRY
from authproxy.settings import RateLimit

PREFIX = "authproxy:rate:"
TIMEOUT = 0.5

# KEYS[1] the client's TAT; ARGV: seconds per request, burst. Answers the seconds to wait, "0"
# when allowed. Numbers go back as strings: Redis would truncate a Lua number to an integer.
_TAKE = """
if redis.replicate_commands then redis.replicate_commands() end
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < t then tat = t end
local after = tat + interval
local over = after - t - tonumber(ARGV[2]) * interval
if over > 0 then return string.format('%.6f', over) end
redis.call('SET', KEYS[1], string.format('%.6f', after), 'PX', math.ceil((after - t) * 1000) + 1000)
return '0'
"""


class RedisRates:
    """`gateway.rates.RemoteLimiter` on Redis."""

    def __init__(self, url: str, *, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.password:
            REGISTRY.add(parts.password)
        self.where = f"{parts.hostname}:{parts.port or 6379}"
        self._redis = Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        self._take = self._redis.register_script(_TAKE)

    async def take(self, client: str, limit: RateLimit) -> float:
        try:
            answer = await self._take(keys=[PREFIX + client], args=[1.0 / limit.rate, limit.burst])
        except (RedisError, OSError) as error:
            raise StoreUnavailable(
                f"Redis rate store {self.where} unavailable: {type(error).__name__}"
            ) from None
        return float(answer)

    async def close(self) -> None:
        await self._redis.aclose()
