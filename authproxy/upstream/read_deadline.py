"""The read timeout of one upstream connection: how long the upstream may keep the proxy waiting.

It counts only while bytes are expected (from the moment the whole request is out until the
answer has arrived) and while reading is not paused, so it bounds each wait for the upstream and
never a slow client, whose back-pressure pauses reading. Every read starts the wait anew.

One timer per connection, re-armed for the time left when it fires instead of being reset on
every read: a read costs one clock call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


def _nothing() -> None:
    pass


class ReadDeadline:
    """Calls `expired` once the upstream has sent nothing for `timeout` seconds of waiting."""

    __slots__ = ("_expecting", "_expired", "_last_read", "_loop", "_timer", "paused", "timeout")

    def __init__(self, loop: asyncio.AbstractEventLoop, expired: Callable[[], None]) -> None:
        self._loop = loop
        self._expired = expired
        self.timeout = 60.0
        self.paused = False  # reading is paused: the wait is the client's, not the upstream's
        self._expecting = False
        self._last_read = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def read(self) -> None:
        """Bytes arrived."""
        self._last_read = self._loop.time()

    def expect(self, expecting: bool) -> None:
        """From now on the upstream owes bytes (True) or owes nothing (False)."""
        self._expecting = expecting
        if expecting:
            self.restart()

    def restart(self) -> None:
        """The wait starts now (the request is out, or reading resumed)."""
        now = self._last_read = self._loop.time()
        if not self._expecting:
            return
        deadline = now + self.timeout
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires in time, and re-arms itself for whatever is left
            timer.cancel()  # armed for an earlier exchange with a longer timeout
        self._timer = self._loop.call_at(deadline, self._check)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """For good: the callback (a method of the connection, which holds this) is let go, so
        a closed connection is freed at once rather than by the cycle collector."""
        self.cancel()
        self._expecting = False
        self._expired = _nothing

    def _check(self) -> None:
        self._timer = None
        if not self._expecting or self.paused:
            return
        waited = self._loop.time() - self._last_read
        if waited >= self.timeout:
            self._expired()
        else:
            self._timer = self._loop.call_later(self.timeout - waited, self._check)
