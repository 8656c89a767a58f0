"""One worker process as its supervisor holds it: started, heard from, signalled and reaped.

The supervisor keeps its end of a socketpair per worker. The worker writes one byte on it once it
listens (server/worker.py); end-of-file means it exited. The supervisor never writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(eq=False)
class Worker:
    index: int
    process: asyncio.subprocess.Process
    channel: socket.socket
    ready: asyncio.Future[bool]  # True once it listens; False if it went away first
    reload_pending: bool = False

    def on_channel(self) -> None:
        try:
            data = self.channel.recv(64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the worker exited
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
        if not self.ready.done():
            self.ready.set_result(bool(data))

    def forget(self) -> None:
        """Close the supervisor's end of the channel; a worker not ready by now never will be."""
        if self.channel.fileno() != -1:
            asyncio.get_running_loop().remove_reader(self.channel.fileno())
            self.channel.close()
        if not self.ready.done():
            self.ready.set_result(False)

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


async def start_worker(index: int, command: Sequence[str]) -> Worker:
    """Run `command` as worker `index`, handing it the other end of a new channel.

    Raises OSError when the process or the channel cannot be made.
    """
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        process = await asyncio.create_subprocess_exec(
            *command,
            "--worker-index",
            str(index),
            "--supervisor-fd",
            str(theirs.fileno()),
            pass_fds=(theirs.fileno(),),
            stdin=asyncio.subprocess.DEVNULL,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    ours.setblocking(False)
    worker = Worker(index, process, ours, loop.create_future())
    loop.add_reader(ours.fileno(), worker.on_channel)
    return worker


def describe(code: int) -> str:
    """An exit status for people: `exit code 1`, `killed by SIGKILL`."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
