"""The hot path: one request to one upstream, streamed both ways. Never logs in, never redirects.

Per request it copies headers once, lets the route's auth (if any) inject its headers, sends the
body as a stream (or as bytes when it is small enough to replay after a 401), and copies the answer
back chunk by chunk as it arrives, so Server-Sent Events and long polls flow and memory stays flat.
"""

from __future__ import annotations

import time
from dataclasses import InitVar, dataclass, field
from typing import Protocol

import structlog
from aiohttp import ClientSession, ClientTimeout, web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from authproxy.errors import UpstreamFailure, upstream_error
from authproxy.proxy.headers import (
    LocationRewriter,
    add_forwarded,
    passed_downstream,
    response_removal,
    upstream_request_headers,
)
from authproxy.proxy.request_body import BodyLimits, outgoing_body
from authproxy.proxy.websocket import DEFAULT_MESSAGE_LIMIT, is_websocket_upgrade, proxy_websocket
from authproxy.settings import Route
from authproxy.upstream.client import OriginClient, RequestBody, StreamedBody, UpstreamResponse
from authproxy.upstream.pool import origin_client_of

log = structlog.get_logger("authproxy.proxy.forward")

# A complete answer up to this size goes out as one `web.Response` (head and body in one write)
# instead of being streamed chunk by chunk.
WHOLE_LIMIT = 64 * 1024

NO_BODY_STATUSES = frozenset({204, 304})


class RouteAuth(Protocol):
    """What the hot path needs from a route's auth: a credential, headers, and feedback."""

    @property
    def request_headers(self) -> frozenset[str]: ...

    @property
    def response_headers(self) -> frozenset[str]: ...

    async def acquire(self) -> object: ...

    def inject(self, headers: CIMultiDict[str], grant: object) -> None: ...

    def rejects(self, status: int) -> bool: ...

    async def after_rejection(self, grant: object) -> object | None: ...

    def answered(
        self,
        grant: object,
        status: int,
        headers: CIMultiDictProxy[str],
        *,
        replayed: bool = False,
    ) -> None: ...


@dataclass(slots=True)
class RouteRuntime:
    """A route with everything its requests need, prepared once at start."""

    route: Route
    session: ClientSession
    timeout: ClientTimeout
    rewriter: LocationRewriter
    auth: RouteAuth | None = None
    drop_request: frozenset[str] = field(default_factory=frozenset)
    drop_response: frozenset[str] = field(default_factory=frozenset)
    bodies: BodyLimits = field(default_factory=BodyLimits)
    websocket_message: int = DEFAULT_MESSAGE_LIMIT  # limits.websocket_message
    # The lean client of the session's origin (`UpstreamPool.client`): requests go through it,
    # the session serves WebSocket upgrades. Found through the session when not given.
    origin_client: InitVar[OriginClient | None] = None
    client: OriginClient = field(init=False)
    # Lower-case response header names never passed to the client on this route.
    response_removed: frozenset[str] = field(init=False)

    def __post_init__(self, origin_client: OriginClient | None) -> None:
        self.client = origin_client or origin_client_of(self.session)
        self.response_removed = response_removal(self.drop_response)


@dataclass(slots=True)
class Exchange:
    """What one request did, for the access log."""

    request_id: str
    route: str | None = None
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    upstream_ms: float | None = None
    client: str | None = None
    # Request headers that carried the proxy's own client key: never sent upstream.
    strip: frozenset[str] = frozenset()
    # Replay-budget bytes this request's buffered body holds, released when it is done.
    replay_held: int = 0
    # Added to the upstream's answer (CORS for a route's listed origins, see gateway/browser.py).
    answer_headers: tuple[tuple[str, str], ...] = ()


async def forward(
    request: web.BaseRequest, runtime: RouteRuntime, url: URL, exchange: Exchange
) -> web.StreamResponse:
    drop = runtime.drop_request | exchange.strip if exchange.strip else runtime.drop_request
    headers = upstream_request_headers(request.headers, drop)
    if runtime.route.forwarded_headers:
        add_forwarded(headers, request.remote, request.scheme, request.host)
    headers["X-Request-Id"] = exchange.request_id
    auth = runtime.auth
    grant: object = None
    if auth is not None:
        grant = await auth.acquire()
        auth.inject(headers, grant)
    if is_websocket_upgrade(request):
        exchange.status = 101
        return await proxy_websocket(request, runtime, url, headers, exchange)

    body, exchange.replay_held = await outgoing_body(
        request, runtime.bodies, runtime.route.name, replayable=auth is not None
    )
    target = url.raw_path_qs
    started = time.perf_counter()
    upstream = await _send(runtime, request.method, target, headers, body)
    replayed = False
    try:
        if (
            auth is not None
            and auth.rejects(upstream.status)
            and not isinstance(body, StreamedBody)
        ):
            # The token was refused: renew it once and replay, with headers rebuilt from
            # scratch. None means no new token is worth a login now; the client then gets
            # this answer.
            renewed = await auth.after_rejection(grant)
            if renewed is not None:
                upstream.release()
                grant = renewed
                auth.inject(headers, grant)
                upstream = await _send(runtime, request.method, target, headers, body)
                replayed = True
        exchange.upstream_ms = (time.perf_counter() - started) * 1000
        if auth is not None:
            auth.answered(grant, upstream.status, upstream.headers, replayed=replayed)
        return await _relay(request, runtime, upstream, exchange)
    finally:
        upstream.release()  # whatever happened: the connection goes back to the pool or closes
        exchange.bytes_in = request.content.total_bytes
        # The answer goes out once this returns, and the next request may follow right after.
        runtime.client.keep_polling()


async def _send(
    runtime: RouteRuntime, method: str, target: str, headers: CIMultiDict[str], body: RequestBody
) -> UpstreamResponse:
    route = runtime.route
    try:
        return await runtime.client.request(method, target, headers, body, route.timeout)
    except UpstreamFailure as error:
        raise upstream_error(route.name, error) from error


async def _relay(
    request: web.BaseRequest, runtime: RouteRuntime, upstream: UpstreamResponse, exchange: Exchange
) -> web.StreamResponse:
    head = upstream.head
    out = passed_downstream(head.headers, head.lowered, head.connection, runtime.response_removed)
    if head.content_length is not None:
        out["Content-Length"] = str(head.content_length)
    for name in ("Location", "Content-Location"):
        if (value := out.get(name)) is not None:
            out[name] = runtime.rewriter.rewrite(value, f"{request.scheme}://{request.host}")
    # `Proxy.handle` can only add the id to responses not yet sent; this one is prepared here.
    out["X-Request-Id"] = exchange.request_id
    out.extend(exchange.answer_headers)
    status = exchange.status = upstream.status
    bodyless = request.method == "HEAD" or status in NO_BODY_STATUSES
    length = upstream.length
    if not bodyless and length is not None and length <= WHOLE_LIMIT and upstream.complete:
        # All of it is here already: head and body leave in one write. (A chunked answer keeps
        # its framing: the client may rely on it, e.g. for Server-Sent Events.)
        body = upstream.body()
        exchange.bytes_out = len(body)
        return web.Response(status=status, reason=upstream.reason, headers=out, body=body)
    response = web.StreamResponse(status=status, reason=upstream.reason, headers=out)
    await response.prepare(request)
    if not bodyless:
        try:
            while chunk := await upstream.read_chunk():
                await response.write(chunk)
                # Body bytes, as counted for the proxy's own answers: `body_length` adds the
                # head and chunk framing, and stays 0 when the body is cut short.
                exchange.bytes_out += len(chunk)
        except UpstreamFailure as error:
            # Headers are gone already: the only honest signal left is to cut the connection,
            # so the client sees a truncated body rather than a complete-looking wrong one.
            log.warning(
                "upstream failed mid-body",
                route=runtime.route.name,
                request_id=exchange.request_id,
                error=error.reason,
            )
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response
