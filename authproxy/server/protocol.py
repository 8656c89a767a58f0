"""aiohttp's low-level server, with the proxy's answers to malformed, stalled and excess clients.

aiohttp answers every parse error with a plain-text 400 and logs the offending line (which may hold
a header value, a token included). Here an oversized request line or header gets 431 (RFC 6585 §5),
a request line of HTTP/0.9 a 400 and of a version other than 1.0 or 1.1 a 505, everything else a
problem+json 400, and the log names only the kind of error, a few times per peer at most
(`PeerLog`).
Every request head must arrive within `header_timeout` of its first byte (the first request's from
the moment the connection opens), so a slow or stalled client costs a socket for seconds, never a
worker; idle time between requests is `keepalive_timeout`'s business. Past `max_connections` live
connections a new one gets a canned 503 and is closed without a byte of it being parsed.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import structlog
from aiohttp import web
from aiohttp.http import HttpVersion, HttpVersion10, HttpVersion11
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    LineTooLong,
)
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from authproxy.logs.peer_log import PeerLog
from authproxy.problems import canned_problem, problem_response

log = structlog.get_logger("authproxy.server.protocol")


SUPPORTED_VERSIONS = frozenset({HttpVersion10, HttpVersion11})
TOO_MANY_CONNECTIONS = canned_problem(
    503,
    "the proxy has as many connections as it accepts (limits.max_connections); retry later",
    kind="too-many-connections",
    headers={"Retry-After": "1"},
)
# A refused connection is kept this long at most, reading and dropping what the client sends, so
# that the close does not reset the connection before the client has read the 503.
REFUSAL_LINGER = 2.0
# llhttp's own words for a well-formed version it does not know (HTTP/1.2, HTTP/3.0); the
# client's bytes only follow them.
_UNKNOWN_VERSION = "Bad status line:\n  Invalid HTTP version:"


class UnsupportedVersion(HttpProcessingError):
    """A request line that parsed, with an HTTP version the proxy does not speak."""

    def __init__(self, version: HttpVersion) -> None:
        super().__init__(message="unsupported HTTP version")
        self.version = version


def status_for_parse_error(error: BaseException | None) -> tuple[int, str, str | None]:
    """(status, detail, problem kind or None) for an unparseable or refused request."""
    if isinstance(error, UnsupportedVersion):
        if error.version < HttpVersion10:
            return 400, "HTTP/0.9 requests are not accepted", "unsupported-http-version"
        return 505, "only HTTP/1.0 and HTTP/1.1 are accepted", "unsupported-http-version"
    if isinstance(error, BadStatusLine) and error.message.startswith(_UNKNOWN_VERSION):
        return 505, "only HTTP/1.0 and HTTP/1.1 are accepted", "unsupported-http-version"
    # LineTooLong does not say which line overflowed: its text is the client's own bytes, so
    # sniffing it for "url" let a header value choose 414. One status for both (RFC 6585 §5).
    if isinstance(error, LineTooLong):
        return 431, "the request line or headers are too large", None
    # Compare aiohttp's own message exactly: other errors' text embeds client bytes.
    if isinstance(error, HttpProcessingError) and error.message == "Too many headers received":
        return 431, "the request has too many headers", None
    if isinstance(error, BadHttpMethod):
        return 400, "the request method is invalid", None
    return 400, "the request is malformed", None


class ProxyRequestHandler(RequestHandler):
    """One client connection: counted against the cap, its request heads timed."""

    def __init__(self, manager: ProxyHttpServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._server = manager
        self._header_timeout = manager.header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        # The payload of the last request head parsed: until it has ended, bytes are body.
        self._last_payload: StreamReader | None = None
        # A head began behind a request still being answered: timed once the answers are out.
        self._head_waiting = False
        self._counted = False
        self._refusal: asyncio.TimerHandle | None = None
        # The client stopped sending its body: once the answer is out, the connection closes at
        # once, instead of aiohttp lingering for seconds to read a body that is not coming.
        self.close_after_answer = False

    @property
    def peer(self) -> str:
        peername = self.peername
        return str(peername[0] if isinstance(peername, tuple) else peername or "unknown")

    # ---- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        server = self._server
        if server.live >= server.max_connections:
            self._refuse(transport)
            return
        server.live += 1
        self._counted = True
        super().connection_made(transport)
        self._arm_header_timer()  # the first head is timed from the moment the connection opens

    def _refuse(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        transport = cast(asyncio.Transport, base)
        peername = transport.get_extra_info("peername")
        peer = str(peername[0] if isinstance(peername, tuple) else peername)
        self._server.peer_log.log(peer, "refused a connection over limits.max_connections")
        transport.write(TOO_MANY_CONNECTIONS)
        if transport.can_write_eof():
            transport.write_eof()
        self._refusal = asyncio.get_running_loop().call_later(REFUSAL_LINGER, transport.abort)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refusal is not None:
            self._refusal.cancel()
        if not self._counted:
            return  # refused: nothing else was set up
        self._counted = False
        self._server.live -= 1
        self._disarm_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._counted:
            return  # a refused connection: its bytes are dropped unread
        starts_head = data and self._header_timer is None and self._between_messages()
        parsed = self._request_count
        super().data_received(data)
        if self._request_count != parsed:
            self._heads_parsed(self._request_count - parsed, data)
        elif starts_head:
            self._head_started()  # (a head that arrives whole in one read needs no timer)

    # ---- request heads -------------------------------------------------------------------------

    def _between_messages(self) -> bool:
        """True when the next byte starts a request head, not body or WebSocket bytes."""
        if self._upgraded or self._payload_parser is not None:
            return False
        payload = self._last_payload
        return payload is None or payload.is_eof()

    def _head_started(self) -> None:
        if self._request_in_progress or self._messages:
            self._head_waiting = True  # pipelined: its time starts after the answers before it
        else:
            self._arm_header_timer()

    def _heads_parsed(self, count: int, data: bytes) -> None:
        self._disarm_header_timer()
        self._head_waiting = False
        messages = self._messages
        for index in range(len(messages) - count, len(messages)):
            message, _payload = messages[index]
            if not isinstance(message, _ErrInfo) and message.version not in SUPPORTED_VERSIONS:
                # Refused before any handler sees it (HTTP/0.9, HTTP/2.0 as text).
                error = UnsupportedVersion(message.version)
                messages[index] = (_ErrInfo(400, error, error.message), EMPTY_PAYLOAD)
        self._last_payload = messages[-1][1] if messages else None
        if self._between_messages() and not data.endswith((b"\r\n\r\n", b"\n\n")):
            self._head_started()  # the read went on past the last complete head

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        finished = await super().finish_response(request, resp, start_time)
        if self.close_after_answer:
            self.force_close()  # the answer is written; the transport sends it, then closes
        elif self._head_waiting and not self._messages:
            self._head_waiting = False
            self._arm_header_timer()
        return finished

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            loop = asyncio.get_running_loop()
            self._header_timer = loop.call_later(self._header_timeout, self._header_deadline)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self.transport is None:
            return
        self._server.peer_log.log(
            self.peer, "closed a connection whose request head did not arrive in time", level="info"
        )
        self.force_close()  # closes the transport, and forgets it

    # ---- errors --------------------------------------------------------------------------------

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        kind: str | None = None
        if status == 500:
            self._server.peer_log.log(
                self.peer,
                "unexpected error while handling a request",
                level="error",
                error=type(exc).__name__,
            )
            detail = "the proxy failed unexpectedly"
        else:
            status, detail, kind = status_for_parse_error(exc)
            self._server.peer_log.log(
                self.peer, "rejected a malformed request", status=status, reason=detail
            )
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = problem_response(status, detail, kind=kind)
        response.force_close()
        return response


def close_after_answer(request: web.BaseRequest) -> None:
    """Close the request's connection as soon as its answer is written."""
    if isinstance(protocol := request.protocol, ProxyRequestHandler):
        protocol.close_after_answer = True


class ProxyHttpServer(web.Server):
    """`web.Server` whose connections are `ProxyRequestHandler`s, at most `max_connections`."""

    def __init__(
        self,
        handler: Any,
        *,
        header_timeout: float,
        max_connections: int = 1024,
        peer_log: PeerLog | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self.live = 0  # connections accepted and not yet closed
        self.peer_log = peer_log or PeerLog(log)

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)

    async def shutdown(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 - aiohttp's signature
        await super().shutdown(timeout)
        self.peer_log.flush()
