"""The hot path: one request to one upstream, streamed both ways. Never logs in, never redirects.

Per request it copies headers once, lets the route's auth (if any) inject its headers, sends the
body as a stream (or as bytes when it is small enough to replay after a 401), and copies the answer
back chunk by chunk as it arrives, so Server-Sent Events and long polls flow and memory stays flat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog
from aiohttp import ClientSession, ClientTimeout, web
from multidict import CIMultiDict
from yarl import URL

from authproxy.errors import UpstreamFailure, upstream_error
from authproxy.proxy.headers import (
    LocationRewriter,
    add_forwarded,
    apply_edits,
    passed_downstream,
    response_removal,
    upstream_request_headers,
)
from authproxy.proxy.request_body import BodyLimits, outgoing_body
from authproxy.proxy.websocket import DEFAULT_MESSAGE_LIMIT, is_websocket_upgrade, proxy_websocket
from authproxy.settings import HeaderEdits, Route
from authproxy.upstream.client import OriginClient
from authproxy.upstream.request import RequestBody, StreamedBody
from authproxy.upstream.response import UpstreamResponse

log = structlog.get_logger("authproxy.proxy.forward")

# A complete answer up to this size goes out as one `web.Response` (head and body in one write)
# instead of being streamed chunk by chunk.
WHOLE_LIMIT = 64 * 1024

NO_BODY_STATUSES = frozenset({204, 304})
# A refused request is sent again at most this often (a buffered body; never a streamed one).
MAX_REPLAYS = 2


G = TypeVar("G")


class RouteAuth(Protocol[G]):
    """What the hot path needs from a route's auth, typed by its credential `G` (a grant).

    On the fresh path a request makes two calls: `authorize` before it is sent and `answered`
    after. A refusal adds `reauthorize` and a second `answered` for the replay.
    """

    @property
    def request_headers(self) -> frozenset[str]:
        """Lower-case names the route sets itself: client copies never go upstream."""
        ...

    @property
    def response_headers(self) -> frozenset[str]:
        """Lower-case names never passed back to the client."""
        ...

    async def authorize(self, headers: CIMultiDict[str]) -> G:
        """A credential for one request, its headers set on `headers`."""
        ...

    def answered(self, grant: G, answer: UpstreamResponse, *, replayed: bool = False) -> bool:
        """The upstream answered a request sent with `grant`; True: it refused the credential."""
        ...

    async def reauthorize(self, grant: G, headers: CIMultiDict[str]) -> G | None:
        """After a refusal: a new credential set on `headers` to replay with, or None."""
        ...


@dataclass(slots=True)
class RouteRuntime(Generic[G]):
    """A route with everything its requests need, prepared once at start.

    `client` is the lean client of the route's origin: requests go through it; `session` (the
    same origin's aiohttp session) serves WebSocket upgrades.
    """

    route: Route
    session: ClientSession
    client: OriginClient
    timeout: ClientTimeout
    rewriter: LocationRewriter
    auth: RouteAuth[G] | None = None
    drop_request: frozenset[str] = field(default_factory=frozenset)
    drop_response: frozenset[str] = field(default_factory=frozenset)
    bodies: BodyLimits = field(default_factory=BodyLimits)
    websocket_message: int = DEFAULT_MESSAGE_LIMIT  # limits.websocket_message
    # The route's `headers` rules; the answer's removals are in `drop_response` already.
    request_edits: HeaderEdits | None = None
    response_assign: tuple[tuple[str, str], ...] = ()
    # Lower-case response header names never passed to the client on this route.
    response_removed: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
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
    request: web.BaseRequest, runtime: RouteRuntime[G], url: URL, exchange: Exchange
) -> web.StreamResponse:
    drop = runtime.drop_request | exchange.strip if exchange.strip else runtime.drop_request
    headers = upstream_request_headers(request.headers, drop)
    if runtime.route.forwarded_headers:
        add_forwarded(headers, request.remote, request.scheme, request.host)
    headers["X-Request-Id"] = exchange.request_id
    if runtime.request_edits is not None:
        apply_edits(headers, runtime.request_edits)
    auth = runtime.auth  # its headers are set last: they win over the route's rules
    grant = None if auth is None else await auth.authorize(headers)
    if is_websocket_upgrade(request):
        exchange.status = 101
        return await proxy_websocket(request, runtime, url, headers, exchange)

    body, exchange.replay_held = await outgoing_body(
        request, runtime.bodies, runtime.route.name, replayable=auth is not None
    )
    target = url.raw_path_qs
    started = time.perf_counter()
    upstream = await _send(runtime, request.method, target, headers, body)
    try:
        if auth is not None and grant is not None:
            refused = auth.answered(grant, upstream)
            replays = 0
            while refused and replays < MAX_REPLAYS and not isinstance(body, StreamedBody):
                # Renew the credential and replay, headers rebuilt; None: no new one is worth a
                # login now, and the client gets this answer. A second replay only happens when
                # the first one's credential was not a fresh login's (auth/refusals.py).
                renewed = await auth.reauthorize(grant, headers)
                if renewed is None:
                    break
                upstream.release()
                upstream = await _send(runtime, request.method, target, headers, body)
                refused = auth.answered(renewed, upstream, replayed=True)
                grant, replays = renewed, replays + 1
        exchange.upstream_ms = (time.perf_counter() - started) * 1000
        return await _relay(request, runtime, upstream, exchange)
    finally:
        upstream.release()  # whatever happened: the connection goes back to the pool or closes
        exchange.bytes_in = request.content.total_bytes
        # The answer goes out once this returns, and the next request may follow right after.
        runtime.client.keep_polling()


async def _send(
    runtime: RouteRuntime[G], method: str, target: str, headers: CIMultiDict[str], body: RequestBody
) -> UpstreamResponse:
    route = runtime.route
    try:
        return await runtime.client.request(method, target, headers, body, route.timeout)
    except UpstreamFailure as error:
        raise upstream_error(route.name, error) from error


async def _relay(
    request: web.BaseRequest,
    runtime: RouteRuntime[G],
    upstream: UpstreamResponse,
    exchange: Exchange,
) -> web.StreamResponse:
    head = upstream.head
    out = passed_downstream(head.headers, head.lowered, head.connection, runtime.response_removed)
    if head.content_length is not None:
        out["Content-Length"] = str(head.content_length)
    for name in ("Location", "Content-Location"):
        if (value := out.get(name)) is not None:
            out[name] = runtime.rewriter.rewrite(value, f"{request.scheme}://{request.host}")
    for name, value in runtime.response_assign:
        out[name] = value
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
