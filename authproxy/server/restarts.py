"""When the supervisor stops restarting a worker: it keeps dying.

A worker that exits on its own is started again. One that dies more than `RESTART_LIMIT` times in
`RESTART_WINDOW` seconds has a problem restarts will not fix (a crash on every start, a resource
it cannot get), and restarting it for ever would hide that: the supervisor then stops all workers
and exits 1 with the reason.
"""

from __future__ import annotations

from collections import defaultdict, deque

RESTART_LIMIT, RESTART_WINDOW = 3, 60.0  # restarts of one worker allowed per window (seconds)


class CrashLoop:
    """The recent deaths of each worker, by its index."""

    def __init__(self) -> None:
        self._deaths: defaultdict[int, deque[float]] = defaultdict(deque)

    def died(self, index: int, now: float) -> str | None:
        """Count a death of worker `index` at `now` (monotonic seconds); the reason to stop all
        workers when it keeps dying, else None."""
        deaths = self._deaths[index]
        deaths.append(now)
        while deaths[0] < now - RESTART_WINDOW:
            deaths.popleft()
        if len(deaths) <= RESTART_LIMIT:
            return None
        return (
            f"worker {index} exited {len(deaths)} times within {RESTART_WINDOW:.0f} s; "
            "stopped all workers"
        )
