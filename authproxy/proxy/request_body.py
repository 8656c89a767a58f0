"""Request bodies on their way upstream: held for a replay when small and affordable, otherwise
streamed, and bounded in time either way.

A route with auth may have to send a request again after a 401 and a fresh login, which needs the
body in memory. That memory is bounded per request (`REPLAY_LIMIT`) and across the proxy
(`ReplayBudget`, `limits.replay_buffer_total`): without the second bound, a few hundred clients
that each stop one byte short of their declared length held hundreds of MiB. Past the budget,
bodies stream and a 401 reaches the client unchanged.
A client that sends nothing for `limits.body_timeout` seconds in the middle of its body is cut
off: the wait is measured between reads, so a slow but steady upload is never cut.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.streams import StreamReader

from authproxy.errors import RequestBodyTimeout
from authproxy.upstream.request import RequestBody, StreamedBody

# A body up to this size is read before sending on routes with auth, so it can be sent again
# after a 401 and a fresh login; larger ones stream and are never replayed (1 MiB).
REPLAY_LIMIT = 1024 * 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class ReplayBudget:
    """Bytes held in replay buffers by all requests of one proxy at once, at most `total`."""

    __slots__ = ("held", "total")

    def __init__(self, total: int) -> None:
        self.total = total
        self.held = 0

    def reserve(self, size: int) -> bool:
        """Take `size` bytes of the budget if they are free; False leaves it unchanged."""
        if self.held + size > self.total:
            return False
        self.held += size
        return True

    def release(self, size: int) -> None:
        self.held -= size


@dataclass(frozen=True, slots=True)
class BodyLimits:
    """`idle_timeout` seconds allowed between two reads of a body; the proxy's replay budget."""

    idle_timeout: float = 30.0
    budget: ReplayBudget = field(default_factory=lambda: ReplayBudget(64 * 1024 * 1024))


async def outgoing_body(
    request: web.BaseRequest, limits: BodyLimits, route: str, *, replayable: bool
) -> tuple[RequestBody, int]:
    """The body to send upstream, and the replay bytes it reserved (the caller releases them
    when the exchange ends, whatever happened). Raises RequestBodyTimeout for a stalled body."""
    if not request.body_exists:
        return None, 0
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(CONTINUE)
    length = request.content_length
    if (
        replayable
        and length is not None
        and length <= REPLAY_LIMIT
        and limits.budget.reserve(length)
    ):
        try:
            return await _read_whole(request.content, limits.idle_timeout), length
        except TimeoutError:
            limits.budget.release(length)
            raise RequestBodyTimeout(route) from None
        except BaseException:
            limits.budget.release(length)
            raise
    return StreamedBody(request.content, length, limits.idle_timeout), 0


async def _read_whole(content: StreamReader, idle_timeout: float) -> bytes:
    parts: list[bytes] = []
    while True:
        async with asyncio.timeout(idle_timeout):
            part = await content.readany()
        if not part:
            return b"".join(parts)
        parts.append(part)
