"""Log lines about what anonymous peers do, at most a few per peer address per window.

A malformed request or a stalled connection costs an attacker nothing, and cost the proxy one log
line each: enough to flood a disk or drown the lines that matter. Each address gets `per_peer`
lines per `window` seconds; the rest are counted, and when the window ends one summary line says
how many were held back and from how many addresses. Memory stays bounded: at most `max_peers`
addresses are tracked per window (further ones are only counted), and everything is cleared when
the window ends, so an attacker with many addresses cannot grow it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

PER_PEER = 3
WINDOW = 60.0
MAX_PEERS = 1024


class PeerLog:
    """`log(peer, event, **fields)`: a line under the per-peer limit, else a count."""

    def __init__(
        self,
        logger: Any,
        *,
        per_peer: int = PER_PEER,
        window: float = WINDOW,
        max_peers: int = MAX_PEERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._per_peer = per_peer
        self._window = window
        self._max_peers = max_peers
        self._clock = clock
        self._counts: dict[str, int] = {}
        self._held: dict[str, int] = {}  # per event: lines held back this window
        self._held_peers: set[str] = set()
        self._window_end = clock() + window
        self._flusher: asyncio.TimerHandle | None = None

    def log(self, peer: str, event: str, *, level: str = "warning", **fields: object) -> None:
        if self._clock() >= self._window_end:
            self.flush()
        count = self._counts.get(peer)
        if count is None:
            if len(self._counts) >= self._max_peers:
                self._hold(event, "other peers")
                return
            count = 0
        self._counts[peer] = count + 1
        if count < self._per_peer:
            getattr(self._log, level)(event, peer=peer, **fields)
        else:
            self._hold(event, peer)

    def _hold(self, event: str, peer: str) -> None:
        self._held[event] = self._held.get(event, 0) + 1
        if len(self._held_peers) < self._max_peers:
            self._held_peers.add(peer)
        if self._flusher is None:
            # Said when the window ends, even if no peer misbehaves after it.
            loop = asyncio.get_running_loop()
            delay = max(0.0, self._window_end - self._clock())
            self._flusher = loop.call_later(delay, self.flush)

    def flush(self) -> None:
        """End the window: one summary line if anything was held back; counts start over."""
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._held:
            self._log.warning(
                "repeated warnings from peers were held back",
                held=dict(self._held),
                peers=len(self._held_peers),
                window_seconds=self._window,
            )
        self._counts.clear()
        self._held.clear()
        self._held_peers.clear()
        self._window_end = self._clock() + self._window
