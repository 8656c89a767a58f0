"""One keep-alive HTTP/1.1 connection to an upstream, as an asyncio Protocol: the answer's head and
body arrive here, framed by llhttp (`answer.AnswerParser`, one per connection), and wait in a small
queue for the forwarder to take them.

Back-pressure: when more than `HIGH_WATER` body bytes wait unread, reading from the socket pauses,
and it resumes once the reader is down to `LOW_WATER`; a slow client therefore slows the upstream
instead of filling memory. The read timeout (upstream/read_deadline.py) does not count while
reading is paused: it bounds each wait for the upstream, never a slow client.

Failures are `errors.UpstreamFailure` exceptions with fixed, secret-free messages: never the
upstream's own bytes, which can carry anything.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import cast

from authproxy.errors import (
    BodyCutShort,
    ConnectionBroken,
    Disconnected,
    InvalidAnswer,
    TimedOut,
    UpstreamFailure,
)
from authproxy.upstream.answer import AnswerParser
from authproxy.upstream.head import ResponseHead
from authproxy.upstream.read_deadline import ReadDeadline

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


_IDLE, _HEAD, _BODY, _DONE = range(4)


class UpstreamConnection(asyncio.Protocol):
    """Carries one exchange at a time: `begin`, write the request, `read_head`, `read_chunk`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        # Per exchange:
        self._state = _IDLE
        self._answer: AnswerParser | None = None  # the exchange's: `_reader`, or None when idle
        self._reader: AnswerParser | None = None
        self.head: ResponseHead | None = None
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self.error: UpstreamFailure | None = None
        self.keep_alive = False
        self.received_any = False
        # Writing flow control; reading is paused through the read timeout, which stops counting:
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._deadline = ReadDeadline(loop, self._timed_out)

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # A request head must not wait for Nagle: it is all we have to send.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._deadline.read()
        self.received_any = True
        answer = self._answer
        if answer is None or self._state in (_IDLE, _DONE):
            # Bytes nobody asked for: this connection's framing can no longer be trusted.
            self.keep_alive = False
            if self._state == _IDLE:
                self.abort()
            return
        before = answer.body_bytes
        try:
            answer.feed(data)
        except InvalidAnswer as failure:
            self._fail(failure)
            return
        self._buffered += answer.body_bytes - before
        if self._state == _HEAD:
            if answer.head is None:
                return
            self.head = answer.head
            self._state = _BODY
        self.keep_alive = answer.reusable
        if answer.complete:
            self._finish()
        elif self._buffered > HIGH_WATER and not self._deadline.paused:
            assert self.transport is not None
            self._deadline.paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        return False  # close; connection_lost decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._deadline.cancel()
        answer = self._answer
        if self._state == _HEAD:
            midway = answer is not None and answer.midway
            self._fail(ConnectionBroken() if exc is not None or midway else Disconnected())
        elif self._state == _BODY:
            if answer is not None and answer.until_close and exc is None:
                self._finish()  # a body delimited by the close has ended
            else:
                self._fail(BodyCutShort())
        self._wake_drain()
        # Nothing refers back to a closed connection: it goes as soon as its last user does.
        self._deadline.close()
        if self._reader is not None:
            self._reader.close()

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        self._wake_drain()

    # ---- the exchange --------------------------------------------------------------------------

    def begin(self, method: str, read_timeout: float) -> None:
        self._state = _HEAD
        reader = self._reader
        if reader is None:
            reader = self._reader = AnswerParser(method, self._chunks)
        else:
            reader.restart(method)
        self._answer = reader
        self.head = None
        self._buffered = 0
        self.error = None
        self.keep_alive = False
        self.received_any = False
        self._deadline.timeout = read_timeout

    @property
    def buffered(self) -> int:
        """Body bytes received and not yet taken by the reader."""
        return self._buffered

    @property
    def reading_paused(self) -> bool:
        return self._deadline.paused

    @property
    def writing_paused(self) -> bool:
        return self._writing_paused

    async def drain(self) -> None:
        """Wait until the socket takes more data (or the connection is gone)."""
        while self._writing_paused and not self.closed:
            self._drain_waiter = waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                self._drain_waiter = None

    def request_sent(self) -> None:
        """The whole request is out: from now on the read timeout runs."""
        self._deadline.expect(self._state in (_HEAD, _BODY))

    async def read_head(self) -> ResponseHead:
        while self.head is None:
            if self.error is not None:
                raise self.error
            await self._wait()
        return self.head

    @property
    def complete(self) -> bool:
        """The whole body has arrived (some of it may still wait in the queue)."""
        return self._state == _DONE

    def take_all(self) -> bytes:
        """Every queued body byte, for a complete body."""
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self._buffered = 0
        return data

    async def read_chunk(self) -> bytes:
        """The next piece of the body; b"" at its end. Raises the failure that cut it short."""
        while not self._chunks:
            if self._state == _DONE:
                return b""
            if self.error is not None:
                raise self.error
            await self._wait()
        chunk = self._chunks.popleft()
        self._buffered -= len(chunk)
        if self._deadline.paused and self._buffered <= LOW_WATER and self.transport is not None:
            self._deadline.paused = False
            self.transport.resume_reading()
            self._deadline.restart()
        return chunk

    @property
    def reusable(self) -> bool:
        return (
            self._state == _DONE
            and self.keep_alive
            and self.error is None
            and not self.closed
            and not self._chunks
        )

    def finish_exchange(self) -> None:
        """Back to idle, for the pool."""
        self._state = _IDLE
        self._answer = None
        self.head = None

    def fail(self, error: UpstreamFailure) -> None:
        self._fail(error)

    def abort(self) -> None:
        self.closed = True
        self._deadline.cancel()
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        self._deadline.cancel()
        if self.transport is not None:
            self.transport.close()

    # ---- completion ----------------------------------------------------------------------------

    def _finish(self) -> None:
        self._state = _DONE
        self._deadline.expect(False)
        self._wake()

    def _fail(self, error: UpstreamFailure) -> None:
        if self.error is None and self._state != _DONE:
            self.error = error
        self._deadline.expect(False)
        self.abort()
        self._wake()
        self._wake_drain()

    # ---- waiting -------------------------------------------------------------------------------

    async def _wait(self) -> None:
        self._waiter = waiter = self._loop.create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake_drain(self) -> None:
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timed_out(self) -> None:
        if not self.closed:
            self._fail(TimedOut())
