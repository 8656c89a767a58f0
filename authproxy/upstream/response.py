"""An upstream's answer on its way to the caller: its head at once, its body as a stream.

`UpstreamResponse` is what `OriginClient.request` returns once the head is in. It owns the
connection until `release()`: then a request body still being sent is stopped (the upstream
answered before taking it whole, and the connection is aborted), and the connection goes back
to the client's pool, which keeps it only if the exchange ended cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.upstream.connection import UpstreamConnection


class UpstreamResponse:
    """An answer's head, and its body as a stream. `release()` exactly once, when done."""

    __slots__ = ("_conn", "_headers", "_put_back", "_released", "_sender", "head")

    def __init__(
        self,
        put_back: Callable[[UpstreamConnection], None],
        conn: UpstreamConnection,
        sender: asyncio.Task[None] | None,
    ) -> None:
        """`put_back` takes the connection once the answer is done with (the client's pool);
        `sender` is the task still sending the request body, if any."""
        head = conn.head
        assert head is not None
        self.head = head
        self._headers: CIMultiDictProxy[str] | None = None
        self._put_back = put_back
        self._conn = conn
        self._sender = sender
        self._released = False

    @property
    def status(self) -> int:
        return self.head.status

    @property
    def reason(self) -> str:
        return self.head.reason

    @property
    def length(self) -> int | None:
        """The Content-Length the upstream gave, if any."""
        return self.head.length

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """All of the answer's headers, hop-by-hop ones included, as received."""
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self.head.headers))
        return self._headers

    @property
    def complete(self) -> bool:
        """The whole body has arrived: `body()` returns it without waiting."""
        return self._conn.complete

    def body(self) -> bytes:
        return self._conn.take_all()

    @property
    def connection(self) -> UpstreamConnection:
        """The connection carrying this answer (for flow-control checks)."""
        return self._conn

    async def read_chunk(self) -> bytes:
        """The next piece of the body, b"" at its end; raises UpstreamFailure if it was cut."""
        return await self._conn.read_chunk()

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        sender = self._sender
        conn = self._conn
        if sender is not None and not sender.done():
            # The upstream answered before taking the whole request body.
            sender.cancel()
            conn.abort()
        self._put_back(conn)
