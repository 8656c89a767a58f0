"""One worker of `authproxy serve --workers N`: its log context and its link to the supervisor.

The worker serves like a single process (server/lifecycle.py) on the port its supervisor holds
(server/supervisor.py). It writes one byte on the socket the supervisor passed once it listens, and
stops when that socket reads end-of-file, so a worker never serves on as an orphan.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable

import structlog

from authproxy.server.app import Proxy
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.settings import Settings

log = structlog.get_logger("authproxy.server.worker")

READY = b"R"  # written once the worker listens; the supervisor takes any byte as "ready"


def bind_worker(index: int) -> None:
    """Every log line of this process carries `worker=<index>`.

    Bound before the event loop starts: tasks and callbacks copy the context they start in.
    """
    structlog.contextvars.bind_contextvars(worker=index)


async def serve_worker(
    settings: Settings, workers: int, reload: Callable[[], Settings], supervisor_fd: int
) -> None:
    """Serve as one of `workers` until SIGTERM/SIGINT, or until the supervisor goes away."""
    loop = asyncio.get_running_loop()
    channel = socket.socket(fileno=supervisor_fd)
    channel.setblocking(False)
    stop = asyncio.Event()

    def on_supervisor() -> None:
        try:
            data = channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(channel.fileno())
            log.warning("the supervisor is gone; stopping")
            stop.set()

    def send_ready() -> None:
        # A supervisor that died meanwhile is noticed by `on_supervisor`.
        with contextlib.suppress(OSError):
            channel.send(READY)

    def started() -> None:
        # On the next loop turn: log lines are written once per turn, so "worker listening" is
        # out before the supervisor hears of it and logs its own lines.
        loop.call_soon(send_ready)

    loop.add_reader(channel.fileno(), on_supervisor)
    try:
        await serve_until_signalled(
            Proxy(settings, workers=workers),
            on_started=started,
            reload=reload,
            stop=stop,
            announce=False,
        )
    finally:
        loop.remove_reader(channel.fileno())
        channel.close()
