"""The port of `serve --workers N`: picked once, held by the supervisor across worker restarts.

Each worker binds its own listening socket with SO_REUSEPORT, and the kernel spreads connections
evenly over them. One socket bound by the supervisor and shared by all workers needs no
SO_REUSEPORT, but asyncio accepts up to 100 connections per wake-up, so whichever worker wakes
first takes a whole burst while the others idle. The supervisor picks the port once (for port 0)
and keeps it bound with SO_REUSEPORT but never listening: such a socket receives no connections,
yet holds the port across worker restarts, and Linux lets only sockets of the same user join the
group. It first binds without SO_REUSEPORT, which fails if anything holds the port, another
`--workers` supervisor included, so two proxies never silently share a port.
"""

from __future__ import annotations

import errno
import socket

from authproxy.errors import AddressInUse, StartupError
from authproxy.settings import Settings


def reserve_port(settings: Settings) -> list[socket.socket]:
    """Sockets bound (not listening) with SO_REUSEPORT to every address of `listen`, one port."""
    listen = settings.listen
    if not hasattr(socket, "SO_REUSEPORT"):
        raise StartupError("--workers needs SO_REUSEPORT, which this platform lacks")
    try:
        infos = socket.getaddrinfo(
            listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        addresses = list(dict.fromkeys((info[0], str(info[4][0])) for info in infos))
        port = listen.port
        # Nothing may hold the port now (this bind has no SO_REUSEPORT); then keep it ourselves.
        probes: list[socket.socket] = []
        try:
            for family, host in addresses:
                probes.append(_bound(family, host, port, reuse_port=False))
                port = port or probes[-1].getsockname()[1]
        finally:
            for probe in probes:
                probe.close()
        reserved: list[socket.socket] = []
        try:
            for family, host in addresses:
                reserved.append(_bound(family, host, port, reuse_port=True))
        except BaseException:
            for sock in reserved:
                sock.close()
            raise
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            raise AddressInUse(listen) from None
        raise StartupError(f"cannot listen on {listen}: {error.strerror}") from None
    return reserved


def _bound(family: int, host: str, port: int, *, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # The options asyncio's create_server sets for the workers' own sockets.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock
