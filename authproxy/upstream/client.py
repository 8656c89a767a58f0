"""The forwarding hot path's HTTP/1.1 client: a keep-alive pool per upstream origin.

aiohttp's `ClientSession` was about a third of the proxy's CPU per request (request objects,
automatic headers, tracing hooks, a writer task): see bench/results/profile-before.txt. This client
does only what a reverse proxy needs: the head goes out in one write with the headers exactly as
given plus Host and body framing, a streamed body follows with back-pressure, and the answer is
read by `UpstreamConnection`. WebSocket upgrades and logins still use aiohttp.

Request framing is the client's own work (upstream/request.py).

A connection goes back to the pool only after an answer that was read to its end, allows
keep-alive, and followed a request that was sent whole. A connection that went stale in the pool
is replaced once, for idempotent requests whose body can be sent again.
"""

from __future__ import annotations

import asyncio
import ssl

from multidict import CIMultiDict
from yarl import URL

from authproxy.errors import (
    CertificateRejected,
    ConnectFailed,
    ConnectionBroken,
    Disconnected,
    TimedOut,
    TlsFailed,
    UpstreamFailure,
)
from authproxy.http_syntax import bracket_host
from authproxy.settings import Timeouts
from authproxy.tasks import spawn
from authproxy.upstream.busy_poll import BusyPoll
from authproxy.upstream.connection import UpstreamConnection
from authproxy.upstream.http1 import serialize_head
from authproxy.upstream.request import RequestBody, StreamedBody, head_fields, send_stream
from authproxy.upstream.response import UpstreamResponse

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
# Idle connections older than this are closed (aiohttp's default keep-alive was the same).
KEEPALIVE_SECONDS = 30.0
# A bytes body up to this size is joined to the head for a single write.
JOIN_LIMIT = 64 * 1024


def tls_failure(error: ssl.SSLError) -> UpstreamFailure:
    """What a failed TLS handshake with the upstream is told as."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return CertificateRejected()
    return TlsFailed()


class OriginClient:
    """Requests to one origin (scheme, host, port, TLS settings) over pooled connections."""

    def __init__(
        self, origin: URL, ssl_context: ssl.SSLContext | None, *, busy_poll: float = 0.0
    ) -> None:
        """`busy_poll`: seconds the event loop keeps polling after sending a request and after
        an answer (`upstream.busy_poll_us`, upstream/busy_poll.py); 0 lets it sleep."""
        host = origin.raw_host or ""
        self._host = host
        self._port = origin.port or (443 if origin.scheme == "https" else 80)
        self._ssl = ssl_context
        default_port = 443 if origin.scheme == "https" else 80
        netloc = bracket_host(host)
        self.host_header = netloc if self._port == default_port else f"{netloc}:{self._port}"
        self._idle: list[UpstreamConnection] = []
        self._busy: set[UpstreamConnection] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._senders: set[asyncio.Task[None]] = set()
        self._poll = BusyPoll(busy_poll)
        self._loop: asyncio.AbstractEventLoop | None = None  # the one its connections live on

    async def request(
        self,
        method: str,
        target: str,
        headers: CIMultiDict[str],
        body: RequestBody,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send one request and return once the answer's head is in; raises UpstreamFailure."""
        head = serialize_head(method, target, head_fields(self.host_header, method, headers, body))
        retry_stale = method in IDEMPOTENT and not isinstance(body, StreamedBody)
        while True:
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(timeouts.connect)
            self._busy.add(conn)
            try:
                return await self._exchange(conn, method, head, body, timeouts.read)
            except (Disconnected, ConnectionBroken):
                self.put_back(conn)
                # The upstream closed a pooled connection as we reused it: nothing was
                # processed, so a request that can be repeated goes out once more, fresh.
                if reused and retry_stale and not conn.received_any:
                    retry_stale = False
                    continue
                raise
            except BaseException:
                conn.abort()  # cancelled (the client left) or failed: the upstream sees it
                self.put_back(conn)
                raise

    async def _exchange(
        self,
        conn: UpstreamConnection,
        method: str,
        head: bytes,
        body: RequestBody,
        read_timeout: float,
    ) -> UpstreamResponse:
        transport = conn.transport
        assert transport is not None
        conn.begin(method, read_timeout)
        sender: asyncio.Task[None] | None = None
        if isinstance(body, StreamedBody):
            transport.write(head)
            sender = spawn(send_stream(conn, body), f"upstream-body:{self.host_header}")
            # Held here too: `close()` stops any body still being sent.
            self._senders.add(sender)
            sender.add_done_callback(self._senders.discard)
        else:
            if not body:
                transport.write(head)
            elif len(body) <= JOIN_LIMIT:
                transport.write(head + body)
            else:
                transport.writelines((head, body))
            conn.request_sent()
        # The upstream answers within microseconds on a LAN or loopback: wait for it awake.
        self._poll.touch(conn.loop)
        try:
            await conn.read_head()
        except BaseException:
            if sender is not None:
                sender.cancel()
            raise
        return UpstreamResponse(self.put_back, conn, sender)

    @property
    def polling(self) -> bool:
        """The event loop is being kept awake for this client's exchanges right now."""
        return self._poll.active

    def keep_polling(self) -> None:
        """Keep the event loop polling for a moment (an answer is about to go out)."""
        if self._loop is not None:
            self._poll.touch(self._loop)

    def _take_idle(self) -> UpstreamConnection | None:
        idle = self._idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def put_back(self, conn: UpstreamConnection) -> None:
        """Pool a connection that can carry another exchange; close any other."""
        self._busy.discard(conn)
        if conn.reusable:
            conn.finish_exchange()
            loop = conn.loop
            conn.idle_since = now = loop.time()
            self._idle.append(conn)
            if self._sweeper is None:
                self._sweeper = loop.call_at(now + KEEPALIVE_SECONDS, self._sweep)
        elif not conn.closed:
            conn.close()

    def _sweep(self) -> None:
        self._sweeper = None
        loop = self._loop
        assert loop is not None
        expired = loop.time() - KEEPALIVE_SECONDS
        keep: list[UpstreamConnection] = []
        for conn in self._idle:
            if conn.closed:
                continue
            if conn.idle_since <= expired:
                conn.close()
            else:
                keep.append(conn)
        self._idle[:] = keep
        if keep:
            self._sweeper = loop.call_at(keep[0].idle_since + KEEPALIVE_SECONDS, self._sweep)

    async def _connect(self, seconds: float) -> UpstreamConnection:
        self._loop = loop = asyncio.get_running_loop()
        tls = self._ssl
        try:
            async with asyncio.timeout(seconds):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(loop),
                    self._host,
                    self._port,
                    ssl=tls,
                    server_hostname=self._host if tls is not None else None,
                )
        except TimeoutError:
            raise TimedOut() from None
        except ssl.SSLError as error:
            raise tls_failure(error) from None
        except OSError:
            raise ConnectFailed() from None
        return conn

    def close(self) -> None:
        """Close every connection, idle or busy (shutdown, after the grace period)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in [*self._idle, *self._busy]:
            conn.abort()
        self._idle.clear()
        self._busy.clear()
        for sender in list(self._senders):
            sender.cancel()
