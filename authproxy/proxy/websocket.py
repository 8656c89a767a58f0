"""WebSocket upgrades, proxied both ways: the upstream handshake first, then the client's.

Connecting upstream before accepting the client means a refused upstream handshake becomes a clean
502 instead of a socket that opens and immediately dies. A redirected handshake is never followed
(see `upstreams.OriginGuard`): the client gets the redirect, its Location rewritten as usual.

Each message is held whole while it passes, so both legs refuse one larger than
`limits.websocket_message`; aiohttp's reader rejects it by its frame header, before buffering it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from aiohttp import (
    ClientError,
    ClientSession,
    ClientWebSocketResponse,
    WebSocketError,
    WSCloseCode,
    WSMsgType,
    web,
)
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from authproxy.errors import UpstreamFailure, upstream_error
from authproxy.proxy.headers import LocationRewriter, downstream_response_headers
from authproxy.settings import Route
from authproxy.tasks import spawn
from authproxy.upstream.pool import UpgradeRedirected

# The handshake is negotiated separately on each side; these belong to one side only.
HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
)
# The redirect's body is not passed on (a WebSocket client never reads it): nor what describes it.
BODY_HEADERS = ("Content-Length", "Content-Encoding", "Content-Type")

DEFAULT_MESSAGE_LIMIT = 4 * 1024 * 1024  # limits.websocket_message

AnySocket = web.WebSocketResponse | ClientWebSocketResponse


class UpgradeRoute(Protocol):
    """What an upgrade needs of its route (forward.RouteRuntime provides it)."""

    @property
    def route(self) -> Route: ...

    @property
    def session(self) -> ClientSession: ...

    @property
    def rewriter(self) -> LocationRewriter: ...

    @property
    def response_removed(self) -> frozenset[str]: ...

    @property
    def websocket_message(self) -> int: ...


class Outcome(Protocol):
    """Where the access log reads the status the client got."""

    status: int


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.BaseRequest,
    runtime: UpgradeRoute,
    url: URL,
    headers: CIMultiDict[str],
    exchange: Outcome,
) -> web.StreamResponse:
    """Open the upstream socket with `headers` (auth already injected) and pump frames."""
    route = runtime.route.name
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    for name in HANDSHAKE_HEADERS:
        headers.popall(name, None)
    # aiohttp refuses a message of `max_msg_size` bytes or more; the limit itself may pass.
    max_msg_size = runtime.websocket_message + 1
    try:
        upstream = await runtime.session.ws_connect(
            url, headers=headers, protocols=protocols, autoping=False, max_msg_size=max_msg_size
        )
    except UpgradeRedirected as redirect:
        exchange.status = redirect.status
        return _redirect_answer(request, runtime, redirect)
    except (ClientError, TimeoutError, UpstreamFailure) as error:
        # An UpstreamFailure: the route's outbound proxy refused (upstream/proxied.py).
        raise upstream_error(route, error) from error

    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else [],
        autoping=False,
        max_msg_size=max_msg_size,
    )
    refused: list[AnySocket] = []  # the legs whose messages the proxy refused
    try:
        await downstream.prepare(request)
        to_upstream = spawn(_pump(downstream, upstream, refused), name=f"ws-to-upstream:{route}")
        try:
            await _pump(upstream, downstream, refused)
        finally:
            to_upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_upstream
    finally:
        # Pass each side's close code on here too: once the client's close handshake ends, its
        # transport closes and handler cancellation can stop `_pump` before it forwarded the code.
        await upstream.close(code=_passed_on(downstream, refused))
        if downstream.prepared:
            await downstream.close(code=_passed_on(upstream, refused))
    return downstream


def _redirect_answer(
    request: web.BaseRequest, runtime: UpgradeRoute, redirect: UpgradeRedirected
) -> web.Response:
    """The upstream's redirect as the client's answer, kept on the proxy like any Location."""
    out = downstream_response_headers(CIMultiDictProxy(redirect.headers), runtime.response_removed)
    for name in BODY_HEADERS:
        out.popall(name, None)
    for name in ("Location", "Content-Location"):
        if (value := out.get(name)) is not None:
            out[name] = runtime.rewriter.rewrite(value, f"{request.scheme}://{request.host}")
    return web.Response(status=redirect.status, reason=redirect.reason, headers=out, body=b"")


def _sendable(code: int | None) -> int:
    """A close code that may go on the wire: 1005, 1006 and 1015 never may (RFC 6455 §7.4.1)."""
    if code is None or code in (1005, 1006, 1015):
        return 1000
    return code


def _passed_on(source: AnySocket, refused: list[AnySocket]) -> int:
    """The close code for the other side once `source` has stopped.

    A close that a peer sent is passed on as it is: its 1009 means a message was too big for that
    peer, which the other side, the message's sender, must learn. But when the proxy itself refused
    what `source` sent (too big: 1009, malformed: 1002, 1007), aiohttp has told `source` so with
    that code, and the other side did nothing wrong: for it the far end is going away, which is
    1001 (RFC 6455 §7.4.1). A 1009 there would tell it that its own message was too big.
    """
    if any(leg is source for leg in refused):
        return int(WSCloseCode.GOING_AWAY)
    return _sendable(source.close_code)


async def _pump(source: AnySocket, sink: AnySocket, refused: list[AnySocket]) -> None:
    """Copy frames until either side closes; pings and pongs pass through untouched."""
    async for message in source:
        if sink.closed:
            return
        if message.type == WSMsgType.TEXT:
            await sink.send_str(message.data)
        elif message.type == WSMsgType.BINARY:
            await sink.send_bytes(message.data)
        elif message.type == WSMsgType.PING:
            await sink.ping(message.data)
        elif message.type == WSMsgType.PONG:
            await sink.pong(message.data)
        elif message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.ERROR):
            if isinstance(message.data, WebSocketError):
                refused.append(source)
            break
    await sink.close(code=_passed_on(source, refused))
