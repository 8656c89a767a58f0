"""Single flight: one login at a time per route, and every request that needs it waits on that one.

A request that finds no usable token joins the login in flight, or starts it; a renewal ahead of
expiry starts one that nobody waits on. The login runs as a named, held task (`Tasks`), so a
client that leaves does not cancel the login the others are waiting on (they wait shielded).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from authproxy.auth.grant import Grant
from authproxy.errors import LoginFailed, LoginUnavailable
from authproxy.tasks import Tasks

log = structlog.get_logger("authproxy.auth")

Attempt = Callable[[], Awaitable[tuple[Grant, bool]]]


class LoginFlight:
    """Runs `attempt` (a grant, and whether this process logged in for it) one at a time."""

    def __init__(
        self,
        route: str,
        tasks: Tasks,
        attempt: Attempt,
        *,
        succeeded: Callable[[Grant, bool], None],
        failed: Callable[[LoginFailed], None],
    ) -> None:
        self._route = route
        self._tasks = tasks
        self._attempt = attempt
        self._succeeded = succeeded
        self._failed = failed
        self._inflight: asyncio.Future[Grant] | None = None

    @property
    def busy(self) -> bool:
        return self._inflight is not None

    async def join(self) -> Grant:
        """The grant of the login in flight, or of one started now; raises LoginFailed."""
        future = self._inflight or self._start(f"login:{self._route}")
        return await asyncio.shield(future)

    def start_in_background(self) -> None:
        if self._inflight is None:
            future = self._start(f"renew:{self._route}")
            # Nobody awaits this one; mark its outcome as seen so a failure is not reported twice.
            future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def _start(self, name: str) -> asyncio.Future[Grant]:
        future: asyncio.Future[Grant] = asyncio.get_running_loop().create_future()
        self._inflight = future
        self._tasks.spawn(self._run(future), name=name)
        return future

    async def _run(self, future: asyncio.Future[Grant]) -> None:
        try:
            grant, obtained = await self._attempt()
        except LoginFailed as error:
            self._failed(error)
            future.set_exception(error)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as error:  # noqa: BLE001 - a bug must fail the waiters, not hang them
            log.error("login crashed", route=self._route, error=repr(error))
            failure = LoginUnavailable(self._route, "the login failed unexpectedly")
            self._failed(failure)
            future.set_exception(failure)
        else:
            self._succeeded(grant, obtained)
            future.set_result(grant)
        finally:
            self._inflight = None
