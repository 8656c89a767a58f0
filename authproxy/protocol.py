"""aiohttp's low-level server, with the proxy's answers to malformed and stalled connections.

aiohttp answers every parse error with a plain-text 400 and logs the offending line (which may hold
a header value, a token included). Here an oversized request line or header gets 431 (RFC 6585 §5),
everything else a problem+json 400, and the log names only the kind of error.
A connection that has not completed its first request's headers in `header_timeout` is closed, so a
slow or stalled client costs a socket for seconds, never a worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler

from authproxy.problems import problem_response

log = structlog.get_logger("authproxy.protocol")

# Set on a request whose client stopped sending its body: once the answer is out, the connection
# closes at once, instead of aiohttp lingering for seconds to read a body that is not coming.
CLOSE_AFTER_ANSWER = web.RequestKey("authproxy.close_after_answer", bool)


def status_for_parse_error(error: BaseException | None) -> tuple[int, str]:
    # LineTooLong does not say which line overflowed: its text is the client's own bytes, so
    # sniffing it for "url" let a header value choose 414. One status for both (RFC 6585 §5).
    if isinstance(error, LineTooLong):
        return 431, "the request line or headers are too large"
    # Compare aiohttp's own message exactly: other errors' text embeds client bytes.
    if isinstance(error, HttpProcessingError) and error.message == "Too many headers received":
        return 431, "the request has too many headers"
    if isinstance(error, BadHttpMethod):
        return 400, "the request method is invalid"
    return 400, "the request is malformed"


class ProxyRequestHandler(RequestHandler):
    def __init__(self, manager: ProxyHttpServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = manager.header_timeout
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        self._header_timer = loop.call_later(self._header_timeout, self._header_deadline)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        super().connection_lost(exc)

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self._request_count == 0 and self.transport is not None:
            log.info("closed a connection that sent no complete request in time")
            self.force_close()
            self.transport.close()

    async def finish_response(
        self, request: web.BaseRequest, resp: web.StreamResponse, start_time: float | None
    ) -> tuple[web.StreamResponse, bool]:
        finished = await super().finish_response(request, resp, start_time)
        if request.get(CLOSE_AFTER_ANSWER):
            self.force_close()  # the answer is written; the transport sends it, then closes
        return finished

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500:
            log.error("unexpected error while handling a request", error=type(exc).__name__)
            detail = "the proxy failed unexpectedly"
        else:
            status, detail = status_for_parse_error(exc)
            log.warning("rejected a malformed request", status=status, reason=detail)
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        response = problem_response(status, detail)
        response.force_close()
        return response


class ProxyHttpServer(web.Server):
    """`web.Server` whose connections are `ProxyRequestHandler`s."""

    def __init__(self, handler: Any, *, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.header_timeout = header_timeout

    def __call__(self) -> RequestHandler:
        return ProxyRequestHandler(self, loop=self._loop, **self._kwargs)
