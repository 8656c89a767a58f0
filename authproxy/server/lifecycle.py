"""Run a proxy until SIGTERM or SIGINT, then stop it gracefully (in-flight requests finish).

The same code runs one process of `serve` and each worker of `serve --workers N`
(server/supervisor.py); a worker leaves the "authproxy listening" line to its supervisor, which
logs it once.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import structlog

from authproxy.errors import ConfigError
from authproxy.server.app import Proxy
from authproxy.settings import Settings

log = structlog.get_logger("authproxy")

LISTENING = "authproxy listening"


def log_listening(url: str | None, settings: Settings, **extra: object) -> None:
    """The start-up line tools and tests wait for: where to connect, and the routes."""
    log.info(
        LISTENING,
        url=url,
        routes=[
            {"name": r.name, "prefix": r.prefix, "upstream": str(r.upstream)}
            for r in settings.routes
        ],
        **extra,
    )


async def serve_until_signalled(
    proxy: Proxy,
    on_started: Callable[[], None] | None = None,
    reload: Callable[[], Settings] | None = None,
    *,
    stop: asyncio.Event | None = None,
    announce: bool = True,
) -> None:
    """Serve until SIGTERM/SIGINT (or `stop` is set); on SIGHUP, `reload()` re-reads the config.

    `announce` False (a worker) logs "worker listening" instead of the start-up line.
    """
    if stop is None:
        stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, _reloader(proxy, reload))
    await proxy.start()
    url = proxy.urls[0] if proxy.urls else None
    if announce:
        log_listening(url, proxy.settings)
    else:
        log.info("worker listening", url=url, pid=os.getpid())
    if on_started is not None:
        on_started()
    try:
        await stop.wait()
    finally:
        log.info("shutting down", grace_seconds=proxy.settings.shutdown_grace)
        # The handlers stay installed until the loop closes: a second signal during the grace
        # period must not kill the process mid-shutdown with in-flight requests cut off.
        await proxy.stop()
        log.info("stopped")


def _reloader(proxy: Proxy, reload: Callable[[], Settings]) -> Callable[[], None]:
    def on_sighup() -> None:
        log.info("SIGHUP: reading the config again")
        try:
            # Reading the file, or the start-up rules on the bound address, may refuse it.
            proxy.reload(reload())
        except ConfigError as error:
            # None of the new config is applied: the old one stays in force, whole.
            log.error(
                "config reload failed; keeping the running config",
                problems=[str(problem) for problem in error.problems],
            )

    return on_sighup
