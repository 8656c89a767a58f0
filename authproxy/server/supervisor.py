"""`authproxy serve --workers N`: the supervisor that starts, watches and stops N worker processes.

What each worker does on its side of this is in server/worker.py.

* Workers are fresh interpreters (`python -m authproxy serve ... --worker-index n`), not forks. A
  fork of a process that runs an event loop inherits its selector, its signal wake-up fd and its
  threads, and every fork would share the random request-id prefix (server/dispatch.py). A fresh
  worker reads the config itself, so its secrets are registered for redaction in its own process.
* The port. Each worker binds its own listening socket with SO_REUSEPORT; the supervisor holds
  the port for them (server/port.py). A Unix socket is bound by the supervisor, and every worker
  accepts on the one it inherits.
* A socketpair per worker, a channel of messages (server/channel.py). The worker says `ready`
  once it listens, and the supervisor logs "authproxy listening" once, when all of them do. A
  worker that reads end-of-file knows the supervisor died, and stops instead of serving on as
  an orphan.
* One set of numbers: a worker scraped for `/-/metrics` or `/-/status` gets every worker's
  counts, summed by the supervisor (server/tally.py).
* One rate limit per client: the supervisor makes a table in shared memory, and every worker
  inherits it (gateway/rates.py).
* Signals. SIGTERM or SIGINT sends SIGTERM to every worker, which stops gracefully; after
  `shutdown_grace` plus a margin the rest are killed. SIGHUP is forwarded to listening workers.
  A worker still starting gets it once it listens, because until then SIGHUP would kill it.
* A worker that exits on its own is logged and started again, unless it keeps dying
  (server/restarts.py): then all stop, exit 1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from authproxy.errors import WorkersFailed
from authproxy.gateway.rates import create_rate_table
from authproxy.http_syntax import host_port
from authproxy.server.channel import Message
from authproxy.server.lifecycle import log_listening
from authproxy.server.port import reserve_port
from authproxy.server.restarts import CrashLoop
from authproxy.server.tally import Tally
from authproxy.server.unix_socket import bind_unix, remove_unix
from authproxy.server.worker_process import Worker, describe, start_worker
from authproxy.settings import Settings
from authproxy.tasks import spawn

log = structlog.get_logger("authproxy.server.supervisor")

MAX_WORKERS = 64
READY_TIMEOUT = 60.0  # seconds a worker may take to start listening
STOP_MARGIN = 10.0  # seconds past shutdown_grace before stopping workers are killed


async def supervise(settings: Settings, count: int, command: Sequence[str]) -> None:
    """Run `count` workers, started as `command` plus worker options, until SIGTERM/SIGINT."""
    if settings.token_store.kind == "memory":
        log.warning(
            "token_store: memory with --workers > 1 means one login per worker", workers=count
        )
    await Supervisor(settings, count, command).run()


class Supervisor:
    def __init__(self, settings: Settings, count: int, command: Sequence[str]) -> None:
        self._settings = settings
        self._count = count
        self._command = tuple(command)
        self._listen = str(settings.listen)
        self._workers: dict[int, Worker] = {}
        self._crash_loop = CrashLoop()
        self._keepers: list[asyncio.Task[None]] = []
        self._stopping: asyncio.Future[None] | None = None
        self._failure: str | None = None
        self._tally = Tally(lambda: self._workers.values())
        # What every worker inherits, named in its hello (server/worker.py).
        self._hello: Message = {"t": "hello", "listen_fd": None, "rates_fd": None}
        self._inherited: tuple[int, ...] = ()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = loop.create_future()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        reserved, url, unlink = self._bind()
        # The clients' rate limits, one table for every worker (gateway/rates.py).
        rates = create_rate_table()
        self._hello["rates_fd"] = rates
        self._inherited = (*self._inherited, rates)
        try:
            if await self._start_all():
                log_listening(url, self._settings, workers=self._count)
                self._keepers = [
                    spawn(self._keep(worker), name=f"authproxy.worker:{worker.index}")
                    for worker in self._workers.values()
                ]
                await self._stopping
        finally:
            await self._stop_all()
            for sock in reserved:
                sock.close()
            os.close(rates)
            unlink()
        if self._failure is not None:
            raise WorkersFailed(self._failure)
        log.info("stopped")

    def _bind(self) -> tuple[list[socket.socket], str, Callable[[], None]]:
        """The sockets held for the workers, the URL to announce, and what removes a socket
        file on exit. A TCP port is held for workers that bind it themselves (server/port.py);
        a Unix socket cannot be shared that way, so it is bound here once and every worker
        serves the one listening socket it inherits."""
        listen = self._settings.listen
        if listen.path is None:
            reserved = reserve_port(self._settings)
            host, port = reserved[0].getsockname()[:2]
            self._listen = host_port(host, port)
            return reserved, f"http://{self._listen}", lambda: None
        sock, inode = bind_unix(listen.path, self._settings.listen_mode)
        self._hello["listen_fd"] = sock.fileno()
        self._inherited = (sock.fileno(),)
        return [sock], str(listen), lambda: remove_unix(listen.path or "", inode)

    async def _start_all(self) -> bool:
        """Start every worker; True once all listen, False when asked to stop first."""
        for index in range(self._count):
            await self._spawn(index)
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        for worker in list(self._workers.values()):
            if await self._until_ready(worker, deadline):
                continue
            if self._stopped:
                return False
            code = await worker.exit_code()
            raise WorkersFailed(f"worker {worker.index} could not start ({describe(code)})")
        return not self._stopped

    async def _keep(self, worker: Worker) -> None:
        """Wait for the worker to exit; start it again unless stopping or it keeps dying."""
        loop = asyncio.get_running_loop()
        while True:
            code = await worker.process.wait()
            worker.forget()
            self._tally.retire(worker)
            if self._stopped:
                return
            crash_loop = self._crash_loop.died(worker.index, time.monotonic())
            log.error(
                "worker exited unexpectedly",
                worker=worker.index,
                pid=worker.process.pid,
                exit=describe(code),
            )
            if crash_loop is not None:
                self._failure = crash_loop
                log.error("a worker keeps dying; stopping all workers", worker=worker.index)
                self._stop()
                return
            try:
                worker = await self._spawn(worker.index)
            except WorkersFailed as error:
                self._failure = str(error)
                self._stop()
                return
            if await self._until_ready(worker, loop.time() + READY_TIMEOUT):
                log.info("worker restarted", worker=worker.index, pid=worker.process.pid)

    async def _spawn(self, index: int) -> Worker:
        try:
            worker = await start_worker(
                index,
                [*self._command, "--listen", self._listen],
                self._hello,
                self._tally.on_message,
                self._inherited,
            )
        except OSError as error:
            raise WorkersFailed(f"cannot start worker {index}: {error.strerror}") from None
        self._workers[index] = worker
        if self._stopped:
            worker.signal(signal.SIGTERM)
        return worker

    async def _until_ready(self, worker: Worker, deadline: float) -> bool:
        """True once the worker listens; False if it exited, timed out (killed) or we stop."""
        assert self._stopping is not None
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        either: list[asyncio.Future[Any]] = [worker.ready, self._stopping]
        await asyncio.wait(either, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if self._stopped:
            return False
        if not worker.ready.done():
            log.error("worker did not start listening in time; killing it", worker=worker.index)
            worker.signal(signal.SIGKILL)
            return False
        if not worker.ready.result():
            return False
        if worker.reload_pending:
            worker.reload_pending = False
            worker.signal(signal.SIGHUP)
        return True

    @property
    def _stopped(self) -> bool:
        return self._stopping is not None and self._stopping.done()

    def _stop(self) -> None:
        if self._stopping is not None and not self._stopping.done():
            self._stopping.set_result(None)

    def _reload(self) -> None:
        log.info("SIGHUP: reloading the config in every worker")
        for worker in self._workers.values():
            if worker.ready.done() and worker.ready.result():
                worker.signal(signal.SIGHUP)
            else:
                worker.reload_pending = True

    async def _stop_all(self) -> None:
        self._stop()
        grace = self._settings.shutdown_grace
        log.info("stopping workers", grace_seconds=grace)
        for worker in self._workers.values():
            worker.signal(signal.SIGTERM)
        # Keepers return once their worker exited; one restarting a worker signals it (_spawn).
        waits = [worker.process.wait() for worker in self._workers.values()]
        try:
            await asyncio.wait_for(asyncio.gather(*self._keepers, *waits), grace + STOP_MARGIN)
        except TimeoutError:
            for worker in self._workers.values():
                if worker.process.returncode is None:
                    log.error("worker did not stop in time; killing it", worker=worker.index)
                    worker.signal(signal.SIGKILL)
            await asyncio.gather(*(worker.process.wait() for worker in self._workers.values()))
            self._failure = self._failure or "workers did not stop within the shutdown grace"
        for keeper in self._keepers:
            keeper.cancel()
        await asyncio.gather(*self._keepers, return_exceptions=True)
        await self._tally.close()
        for worker in self._workers.values():
            worker.forget()
