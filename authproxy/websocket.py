"""WebSocket upgrades, proxied both ways: the upstream handshake first, then the client's.

Connecting upstream before accepting the client means a refused upstream handshake becomes a clean
502 instead of a socket that opens and immediately dies.
"""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import (
    ClientError,
    ClientSession,
    ClientWebSocketResponse,
    WSMsgType,
    WSServerHandshakeError,
    web,
)
from multidict import CIMultiDict
from yarl import URL

from authproxy.errors import UpstreamTimeout, UpstreamUnavailable

# The handshake is negotiated separately on each side; these belong to one side only.
HANDSHAKE_HEADERS = (
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
)

AnySocket = web.WebSocketResponse | ClientWebSocketResponse


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def proxy_websocket(
    request: web.BaseRequest,
    route: str,
    session: ClientSession,
    url: URL,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Open the upstream socket with `headers` (auth already injected) and pump frames."""
    protocols = [
        p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()
    ]
    for name in HANDSHAKE_HEADERS:
        headers.popall(name, None)
    try:
        upstream = await session.ws_connect(
            url, headers=headers, protocols=protocols, autoping=False, max_msg_size=0
        )
    except WSServerHandshakeError as error:
        detail = f"the upstream refused the WebSocket upgrade (status {error.status})"
        raise UpstreamUnavailable(route, detail) from error
    except TimeoutError as error:
        raise UpstreamTimeout(route, "the upstream did not answer the upgrade in time") from error
    except ClientError as error:
        raise UpstreamUnavailable(route, "the upstream WebSocket connection failed") from error

    downstream = web.WebSocketResponse(
        protocols=[upstream.protocol] if upstream.protocol else [],
        autoping=False,
        max_msg_size=0,
    )
    try:
        await downstream.prepare(request)
        to_upstream = asyncio.get_running_loop().create_task(
            _pump(downstream, upstream), name=f"ws-to-upstream:{route}"
        )
        try:
            await _pump(upstream, downstream)
        finally:
            to_upstream.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await to_upstream
    finally:
        # Pass each side's close code on here too: once the client's close handshake ends, its
        # transport closes and handler cancellation can stop `_pump` before it forwarded the code.
        await upstream.close(code=_sendable(downstream.close_code))
        if downstream.prepared:
            await downstream.close(code=_sendable(upstream.close_code))
    return downstream


def _sendable(code: int | None) -> int:
    """A close code that may go on the wire: 1005, 1006 and 1015 never may (RFC 6455 §7.4.1)."""
    if code is None or code in (1005, 1006, 1015):
        return 1000
    return code


async def _pump(source: AnySocket, sink: AnySocket) -> None:
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
            break
    await sink.close(code=_sendable(source.close_code))
