"""One worker process as its supervisor holds it: started, heard from, asked, signalled, reaped.

The supervisor keeps its end of a socketpair per worker, a `Channel` of messages (server/
channel.py). The first message, the hello, is written before the worker starts: the sockets it
inherits (a Unix listener, the rate table). The worker says `ready` once it listens; the
supervisor asks it for its counts (`report`) when any worker is scraped. End-of-file means it
exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from authproxy.gateway.metrics import Counts
from authproxy.server.channel import Channel, Message, frame

# Seconds a worker may take to report its counts before its last report stands in for it.
REPORT_TIMEOUT = 2.0

OnMessage = Callable[["Worker", Message], None]


@dataclass(eq=False)
class Worker:
    index: int
    process: asyncio.subprocess.Process
    ready: asyncio.Future[bool]  # True once it listens; False if it went away first
    reload_pending: bool = False
    channel: Channel | None = None
    # Its counts when it last reported; what it counted after that is lost if it dies.
    last_counts: Counts | None = None
    _asked: dict[int, asyncio.Future[Counts | None]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def received(self, message: Message, on_message: OnMessage) -> None:
        kind = message.get("t")
        if kind == "ready":
            if not self.ready.done():
                self.ready.set_result(True)
        elif kind == "report":
            waiter = self._asked.pop(message.get("id", -1), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(message.get("counts"))
        else:
            on_message(self, message)

    def closed(self) -> None:
        """The worker exited (or is forgotten): nothing more comes from it."""
        if not self.ready.done():
            self.ready.set_result(False)
        for waiter in self._asked.values():
            if not waiter.done():
                waiter.set_result(None)
        self._asked.clear()

    async def report(self) -> Counts | None:
        """Its counts now, also kept as `last_counts`; None if it does not answer in time."""
        if self.channel is None or self.channel.closed:
            return None
        ask = next(self._ids)
        waiter: asyncio.Future[Counts | None] = asyncio.get_running_loop().create_future()
        self._asked[ask] = waiter
        self.channel.send({"t": "report", "id": ask})
        try:
            counts = await asyncio.wait_for(waiter, REPORT_TIMEOUT)
        except TimeoutError:
            counts = None
        finally:
            self._asked.pop(ask, None)
        if counts is not None:
            self.last_counts = counts
        return counts

    def send(self, message: Message) -> None:
        if self.channel is not None:
            self.channel.send(message)

    def forget(self) -> None:
        """Close the supervisor's end of the channel; a worker not ready by now never will be."""
        if self.channel is not None:
            self.channel.close()
        self.closed()

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signum)

    async def exit_code(self) -> int:
        """The exit code of a worker that closed its channel; killed if it lingers."""
        try:
            return await asyncio.wait_for(self.process.wait(), 10.0)
        except TimeoutError:
            self.signal(signal.SIGKILL)
            return await self.process.wait()


async def start_worker(
    index: int,
    command: Sequence[str],
    hello: Message,
    on_message: OnMessage,
    inherited: Sequence[int] = (),
) -> Worker:
    """Run `command` as worker `index`, handing it the other end of a new channel, the `hello`
    on it, and the file descriptors `inherited` (named in the hello).

    Raises OSError when the process or the channel cannot be made.
    """
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        # Waiting in the socket buffer before the worker runs: it reads it first thing.
        ours.sendall(frame(hello))
        process = await asyncio.create_subprocess_exec(
            *command,
            "--worker-index",
            str(index),
            "--supervisor-fd",
            str(theirs.fileno()),
            pass_fds=(theirs.fileno(), *inherited),
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    worker = Worker(index, process, loop.create_future())
    worker.channel = Channel(
        ours, lambda message: worker.received(message, on_message), worker.closed
    )
    return worker


def describe(code: int) -> str:
    """An exit status for people: `exit code 1`, `killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
