"""The listening socket: aiohttp's low-level server with the proxy's connection rules, bound.

The rules themselves (431/400/505 answers, head timeouts, the connection cap) are
server/protocol.py's; here they get their settings, and the socket its address.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from authproxy.errors import AddressInUse, StartupError
from authproxy.http_syntax import host_port
from authproxy.server.protocol import ProxyHttpServer
from authproxy.server.unix_socket import bind_unix, remove_unix
from authproxy.settings import Settings


@dataclass(slots=True)
class Listener:
    runner: web.ServerRunner
    http: ProxyHttpServer
    urls: list[str]
    port: int  # the port bound: port 0 in `listen` picks one
    # The Unix socket file this process bound, and its inode: removed on close.
    owned: tuple[str, int] | None = None

    async def close(self) -> None:
        """Stop accepting; in-flight requests get the shutdown grace. The socket file goes."""
        await self.runner.cleanup()
        if self.owned is not None:
            remove_unix(*self.owned)


Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


async def listen(
    handler: Handler, settings: Settings, *, reuse_port: bool, inherited: int | None = None
) -> Listener:
    """Bind `settings.listen` and serve every request with `handler`; raises StartupError.

    `inherited`: the listening Unix socket a supervisor bound for its workers (server/
    supervisor.py), served here as it is.
    """
    http = ProxyHttpServer(
        handler,
        header_timeout=settings.header_timeout,
        max_connections=settings.max_connections,
        handler_cancellation=True,
        # aiohttp would inflate gzip/deflate request bodies: bytes pass as sent instead, or
        # a body could change under the client's framing and smuggle a request upstream.
        auto_decompress=False,
        keepalive_timeout=settings.keepalive_timeout,
        max_line_size=settings.max_header_size,
        max_field_size=settings.max_header_size,
        access_log=None,
    )
    runner = web.ServerRunner(http, handle_signals=False, shutdown_timeout=settings.shutdown_grace)
    await runner.setup()
    address = settings.listen
    if address.path is not None:
        return await _listen_unix(runner, http, settings, inherited)
    # Workers each bind their own socket to the port their supervisor holds, and the kernel
    # spreads connections over them (see server/port.py).
    site = web.TCPSite(
        runner, address.host, address.port, reuse_address=True, reuse_port=reuse_port
    )
    try:
        await site.start()
    except OSError as error:
        await runner.cleanup()
        if error.errno == errno.EADDRINUSE:
            raise AddressInUse(address) from None
        raise StartupError(f"cannot listen on {address}: {error.strerror}") from None
    port = runner.addresses[0][1] if runner.addresses else address.port
    return Listener(runner, http, [_url_of(bound) for bound in runner.addresses], port)


async def _listen_unix(
    runner: web.ServerRunner, http: ProxyHttpServer, settings: Settings, inherited: int | None
) -> Listener:
    path = settings.listen.path
    assert path is not None
    owned = None
    try:
        if inherited is not None:
            sock = socket.socket(fileno=inherited)
        else:
            sock, inode = bind_unix(path, settings.listen_mode)
            owned = (path, inode)
        await web.SockSite(runner, sock).start()
    except BaseException:
        await runner.cleanup()
        if owned is not None:
            remove_unix(*owned)
        raise
    return Listener(runner, http, [f"unix:{path}"], 0, owned)


def _url_of(address: object) -> str:
    if isinstance(address, tuple):
        return f"http://{host_port(address[0], address[1])}"
    return str(address)
