"""Through an outbound proxy: the CONNECT tunnel (RFC 9110 §9.3.6) and the proxy's credentials.

`open_tunnel` asks the proxy for a byte stream to `host:port` and hands back the socket once the
proxy has said yes; TLS with the upstream (verified as it would be directly, the upstream's host
as the server name) then runs over it. Everything that goes wrong before that is the proxy's, and
is a `ProxyFailed` naming it by `host:port`; never its credentials, never its answer's text.

`TunnelConnector` gives aiohttp the same tunnel, for WebSocket upgrades to a plain-HTTP upstream:
forward proxies drop `Upgrade` from an absolute-form request (tinyproxy answers 400; squid does
unless `http_upgrade_request_protocols` allows it), which is why browsers tunnel `ws://` as well.
"""

from __future__ import annotations

import asyncio
import base64
import re
import socket

from aiohttp import ClientRequest, ClientTimeout, TCPConnector
from aiohttp.client_proto import ResponseHandler
from aiohttp.tracing import Trace

from authproxy.errors import ProxyFailed
from authproxy.http_syntax import host_port
from authproxy.secrets import REGISTRY
from authproxy.settings import OutboundProxy

# A proxy's answer to CONNECT is a status line and a few headers; more is not an answer.
MAX_ANSWER_HEAD = 16 * 1024
# aiohttp's default `sock_connect`, for a session given no timeout of its own.
DEFAULT_CONNECT_SECONDS = 30.0

UNREACHABLE = "refused the connection or could not be reached"
TIMED_OUT = "did not answer in time"
INVALID = "sent an invalid answer to CONNECT"

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})[ \r]")


def proxy_authorization(proxy: OutboundProxy) -> str | None:
    """The `Proxy-Authorization` value for the proxy's credentials (Basic, RFC 7617), or None."""
    if proxy.username is None and proxy.password is None:
        return None
    user = proxy.username.reveal() if proxy.username else ""
    password = proxy.password.reveal() if proxy.password else ""
    # ASCII: config/outbound.py refuses anything else, so aiohttp (Latin-1) sends the same bytes.
    encoded = base64.b64encode(f"{user}:{password}".encode("ascii")).decode("ascii")
    REGISTRY.add(encoded)  # as good as the password itself to whoever reads it
    return f"Basic {encoded}"


def refusal(status: int, *, credentials: bool) -> str:
    """What a proxy's non-2xx answer means, for a `ProxyFailed`."""
    if status == 407:
        if credentials:
            return "refused the proxy credentials (407)"
        return "asks for credentials (407); give them in the proxy URL"
    return f"refused the tunnel to the upstream (status {status})"


async def open_tunnel(
    proxy: OutboundProxy, authorization: str | None, host: str, port: int, deadline: float
) -> socket.socket:
    """A socket through `proxy` to `host:port`, open by `deadline` (the loop's time); raises
    ProxyFailed. The caller owns the socket."""
    loop = asyncio.get_running_loop()
    name = str(proxy)
    try:
        async with asyncio.timeout_at(deadline):
            sock = await _dial(loop, proxy)
            try:
                request = _connect_request(host, port, authorization)
                status = await _handshake(loop, sock, request, name)
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise ProxyFailed(name, TIMED_OUT) from None
    if not 200 <= status < 300:
        sock.close()
        raise ProxyFailed(name, refusal(status, credentials=authorization is not None))
    return sock


def _connect_request(host: str, port: int, authorization: str | None) -> bytes:
    authority = host_port(host, port)
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}"]
    if authorization is not None:
        lines.append(f"Proxy-Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


async def _dial(loop: asyncio.AbstractEventLoop, proxy: OutboundProxy) -> socket.socket:
    """A connected, non-blocking socket to the proxy: each of its addresses in turn."""
    try:
        addresses = await loop.getaddrinfo(proxy.host, proxy.port, type=socket.SOCK_STREAM)
    except OSError:
        raise ProxyFailed(str(proxy), UNREACHABLE) from None
    for family, kind, protocol, _, address in addresses:
        sock = socket.socket(family, kind, protocol)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, address)
        except OSError:
            sock.close()
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    raise ProxyFailed(str(proxy), UNREACHABLE)


async def _handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, request: bytes, name: str
) -> int:
    """Send CONNECT to the proxy `name`, read its answer's head, and return its status."""
    head = b""
    try:
        await loop.sock_sendall(sock, request)
        while b"\r\n\r\n" not in head:
            if len(head) > MAX_ANSWER_HEAD:
                raise ProxyFailed(name, INVALID)
            data = await loop.sock_recv(sock, 4096)
            if not data:
                raise ProxyFailed(name, "closed the connection before answering CONNECT")
            head += data
    except OSError:
        raise ProxyFailed(name, "broke the connection during CONNECT") from None
    match = _STATUS_LINE.match(head)
    if match is None:
        raise ProxyFailed(name, INVALID)
    status = int(match[1])
    # A 2xx answer has no body (RFC 9110 §9.3.6): bytes after its head would be the upstream's,
    # before the upstream was sent anything.
    if 200 <= status < 300 and not head.endswith(b"\r\n\r\n"):
        raise ProxyFailed(name, INVALID)
    return status


class TunnelConnector(TCPConnector):
    """An aiohttp connector whose every connection is a CONNECT tunnel through `proxy`, to a
    plain-HTTP origin (WebSocket upgrades; see the module's docstring).

    It replaces `_create_connection`, the one method aiohttp's own connectors differ by (its
    UnixConnector does the same); pooling, limits and closing stay aiohttp's.
    """

    def __init__(self, proxy: OutboundProxy, *, keepalive_timeout: float) -> None:
        super().__init__(limit=0, keepalive_timeout=keepalive_timeout)
        self._proxy = proxy
        self._authorization = proxy_authorization(proxy)

    async def _create_connection(
        self,
        req: ClientRequest,
        traces: list[Trace],
        timeout: ClientTimeout,  # noqa: ASYNC109 - aiohttp's signature, overridden
    ) -> ResponseHandler:
        if req.is_ssl():
            # An https origin's session uses aiohttp's own tunnel and TLS (upstream/pool.py).
            raise ProxyFailed(str(self._proxy), "is not set up to tunnel TLS here")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout.sock_connect or DEFAULT_CONNECT_SECONDS)
        host = req.url.raw_host or ""
        sock = await open_tunnel(self._proxy, self._authorization, host, req.port or 80, deadline)
        try:
            _, protocol = await loop.create_connection(lambda: ResponseHandler(loop), sock=sock)
        except BaseException:
            sock.close()
            raise
        return protocol
