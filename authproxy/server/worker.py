"""One worker of `authproxy serve --workers N`: its log context and its link to the supervisor.

The worker serves like a single process (server/lifecycle.py) on the port its supervisor holds
(server/supervisor.py). It reads the supervisor's hello first (the sockets it inherits), says
`ready` once it listens, reports its counts when asked, asks for everyone's when it is scraped
(server/tally.py), and stops when the channel reads end-of-file, so a worker never serves on as
an orphan.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable

import structlog

from authproxy.errors import StartupError
from authproxy.gateway.metrics import Counts
from authproxy.gateway.rates import ClientRates, RateTable
from authproxy.server.app import Proxy
from authproxy.server.channel import Channel, Message, read_first
from authproxy.server.fleet import Fleet
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.settings import Settings

log = structlog.get_logger("authproxy.server.worker")

# Seconds to wait for the hello (written before the worker started), and for a sum of counts.
HELLO_TIMEOUT = 10.0
GATHER_TIMEOUT = 5.0


def bind_worker(index: int) -> None:
    """Every log line of this process carries `worker=<index>`.

    Bound before the event loop starts: tasks and callbacks copy the context they start in.
    """
    structlog.contextvars.bind_contextvars(worker=index)


class SupervisorLink:
    """The worker's side of the channel: reports, sums asked for, and the supervisor's end."""

    def __init__(self, fleet: Fleet, gone: asyncio.Event) -> None:
        self._fleet = fleet
        self._gone = gone
        self._asked: dict[int, asyncio.Future[Counts | None]] = {}
        self._ids = itertools.count()
        self._leaving = False
        self.channel: Channel | None = None

    def received(self, message: Message) -> None:
        kind = message.get("t")
        if kind == "report" and self.channel is not None:
            counts = self._fleet.own_counts()
            self.channel.send({"t": "report", "id": message.get("id"), "counts": counts})
        elif kind == "gathered":
            waiter = self._asked.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message.get("counts"))

    def closed(self) -> None:
        for waiter in self._asked.values():
            if not waiter.done():
                waiter.set_result(None)
        if not self._leaving and not self._gone.is_set():
            log.warning("the supervisor is gone; stopping")
            self._gone.set()

    def send(self, message: Message) -> None:
        if self.channel is not None:
            self.channel.send(message)

    def close(self) -> None:
        """This worker stops: its end of the channel closes, without alarm."""
        self._leaving = True
        if self.channel is not None:
            self.channel.close()

    async def gather(self) -> Counts | None:
        """Every worker's counts, summed by the supervisor; None if it does not answer."""
        if self.channel is None or self.channel.closed:
            return None
        ask = next(self._ids)
        waiter: asyncio.Future[Counts | None] = asyncio.get_running_loop().create_future()
        self._asked[ask] = waiter
        self.channel.send({"t": "gather", "id": ask})
        try:
            return await asyncio.wait_for(waiter, GATHER_TIMEOUT)
        except TimeoutError:
            return None
        finally:
            self._asked.pop(ask, None)


async def serve_worker(
    settings: Settings, workers: int, reload: Callable[[], Settings], supervisor_fd: int
) -> None:
    """Serve as one of `workers` until SIGTERM/SIGINT, or until the supervisor goes away."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=supervisor_fd)
    try:
        hello = read_first(sock, HELLO_TIMEOUT)
    except (TimeoutError, OSError):
        hello = None
    if hello is None or hello.get("t") != "hello":
        sock.close()
        raise StartupError("the supervisor sent no hello; a worker is started by --workers")
    stop = asyncio.Event()
    rates_fd = hello.get("rates_fd")
    table = RateTable(rates_fd) if isinstance(rates_fd, int) else None
    listen_fd = hello.get("listen_fd")
    proxy = Proxy(
        settings,
        workers=workers,
        rates=None if table is None else ClientRates(table),
        listen_fd=listen_fd if isinstance(listen_fd, int) else None,
    )
    link = SupervisorLink(proxy.fleet, stop)
    link.channel = Channel(sock, link.received, link.closed)
    proxy.fleet.gather = link.gather

    def started() -> None:
        # On the next loop turn: log lines are written once per turn, so "worker listening" is
        # out before the supervisor hears of it and logs its own lines.
        loop.call_soon(link.send, {"t": "ready"})

    try:
        await serve_until_signalled(
            proxy, on_started=started, reload=reload, stop=stop, announce=False
        )
    finally:
        link.close()
        if table is not None:
            table.close()
