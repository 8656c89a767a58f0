"""The hot path: one request to one upstream, streamed both ways. Never logs in, never redirects.

Per request it copies headers once, lets the route's auth (if any) inject its headers, sends the
body as a stream (or as bytes when it is small enough to replay after a 401), and copies the answer
back chunk by chunk as it arrives, so Server-Sent Events and long polls flow and memory stays flat.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from aiohttp import ClientError, ClientResponse, ClientSession, ClientTimeout, web
from aiohttp.streams import StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from authproxy.config import Route
from authproxy.errors import UpstreamTimeout, UpstreamUnavailable
from authproxy.headers import (
    LocationRewriter,
    add_forwarded,
    downstream_response_headers,
    upstream_request_headers,
)
from authproxy.websocket import is_websocket_upgrade, proxy_websocket

log = structlog.get_logger("authproxy.forward")

# A body up to this size is read before sending on routes with auth, so it can be sent again
# after a 401 and a fresh login; larger ones stream and are never replayed (issue: 1 MiB).
REPLAY_LIMIT = 1024 * 1024

NO_BODY_STATUSES = frozenset({204, 304})
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"

RequestBody = bytes | StreamReader | None


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

    def observe(self, grant: object, headers: CIMultiDictProxy[str]) -> None: ...


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
        return await proxy_websocket(request, runtime.route.name, runtime.session, url, headers)

    body = await _request_body(request, runtime)
    started = asyncio.get_running_loop().time()
    upstream = await _send(runtime, request.method, url, headers, body)
    if auth is not None and auth.rejects(upstream.status) and not isinstance(body, StreamReader):
        # The token was refused: renew it once and replay, with headers rebuilt from scratch.
        # None means no new token is worth a login now; the client then gets this answer.
        renewed = await auth.after_rejection(grant)
        if renewed is not None:
            upstream.release()
            grant = renewed
            auth.inject(headers, grant)
            upstream = await _send(runtime, request.method, url, headers, body)
    exchange.upstream_ms = (asyncio.get_running_loop().time() - started) * 1000
    try:
        if auth is not None:
            auth.observe(grant, upstream.headers)
        return await _relay(request, runtime, upstream, exchange)
    finally:
        upstream.release()
        exchange.bytes_in = request.content.total_bytes


async def _request_body(request: web.BaseRequest, runtime: RouteRuntime) -> RequestBody:
    if not request.body_exists:
        return None
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(CONTINUE)
    length = request.content_length
    if runtime.auth is not None and length is not None and length <= REPLAY_LIMIT:
        return await request.read()
    return request.content


async def _send(
    runtime: RouteRuntime, method: str, url: URL, headers: CIMultiDict[str], body: RequestBody
) -> ClientResponse:
    route = runtime.route.name
    try:
        return await runtime.session.request(
            method,
            url,
            headers=headers,
            data=body,
            allow_redirects=False,
            timeout=runtime.timeout,
        )
    except TimeoutError as error:
        raise UpstreamTimeout(route, "the upstream did not answer in time") from error
    except ClientError as error:
        raise UpstreamUnavailable(route, describe_client_error(error)) from error


def describe_client_error(error: BaseException) -> str:
    """A short, secret-free description: the error's class, never its text (it may hold a URL)."""
    name = type(error).__name__
    reasons = {
        "ClientConnectorError": "the upstream refused the connection or could not be reached",
        "ClientConnectorCertificateError": "the upstream's TLS certificate was not trusted",
        "ClientConnectorSSLError": "the TLS handshake with the upstream failed",
        "ServerDisconnectedError": "the upstream closed the connection without answering",
        "ClientOSError": "the connection to the upstream failed",
        "ClientResponseError": "the upstream sent an invalid HTTP answer",
        "ClientPayloadError": "the upstream's answer body was cut short",
        "InvalidURL": "the upstream URL is invalid",
    }
    return reasons.get(name, f"the upstream request failed ({name})")


async def _relay(
    request: web.BaseRequest, runtime: RouteRuntime, upstream: ClientResponse, exchange: Exchange
) -> web.StreamResponse:
    out = downstream_response_headers(upstream.headers, runtime.drop_response)
    origin = f"{request.scheme}://{request.host}"
    for name in ("Location", "Content-Location"):
        if (value := out.get(name)) is not None:
            out[name] = runtime.rewriter.rewrite(value, origin)
    # `Proxy.handle` can only add the id to responses not yet sent; this one is prepared here.
    out["X-Request-Id"] = exchange.request_id
    response = web.StreamResponse(status=upstream.status, reason=upstream.reason, headers=out)
    exchange.status = upstream.status
    await response.prepare(request)
    if request.method != "HEAD" and upstream.status not in NO_BODY_STATUSES:
        try:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
                # Body bytes, as counted for the proxy's own answers: `body_length` adds the
                # head and chunk framing, and stays 0 when the body is cut short.
                exchange.bytes_out += len(chunk)
        except (ClientError, TimeoutError) as error:
            # Headers are gone already: the only honest signal left is to cut the connection,
            # so the client sees a truncated body rather than a complete-looking wrong one.
            log.warning(
                "upstream failed mid-body",
                route=runtime.route.name,
                request_id=exchange.request_id,
                error=describe_client_error(error),
            )
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response
