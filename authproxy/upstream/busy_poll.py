"""Busy polling: keep the event loop spinning for a moment after activity, instead of sleeping.

On a virtual machine a core that goes idle between the steps of one request pays for it twice:
waking it takes an interrupt through the hypervisor, and the code it runs next finds its caches
cold. A proxy at low concurrency sleeps twice per request (waiting for the upstream, then for the
next request), and on the benchmark VM waking up was most of its added latency. `touch()` keeps
the loop polling with zero timeouts until `window` seconds after the last activity: under load
there is always work and it costs one callback per loop iteration; once idle it stops after one
window, so an idle proxy burns nothing. A window of 0 turns it off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class BusyPoll:
    __slots__ = ("_clock", "_loop", "_until", "window")

    def __init__(self, window: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.window = window
        self._clock = clock
        self._until = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None  # set while polling

    @property
    def active(self) -> bool:
        return self._loop is not None

    def touch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Keep `loop` polling until `window` seconds from now."""
        if self.window <= 0:
            return
        self._until = self._clock() + self.window
        if self._loop is None:
            self._loop = loop
            loop.call_soon(self._spin)

    def _spin(self) -> None:
        # A ready callback makes the loop poll without blocking, then run it again: a spin.
        loop = self._loop
        if loop is not None and self._clock() < self._until and not loop.is_closed():
            loop.call_soon(self._spin)
        else:
            self._loop = None
