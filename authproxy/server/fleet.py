"""What `/-/status` and `/-/metrics` show beyond the process that answers.

With `serve --workers N` any worker may answer a scrape, and with Redis any replica: a page that
showed only its own process's numbers and token copy would jump between scrapes. So the counts
are every worker's, summed by the supervisor (server/supervisor.py), and each route's token is
the one in the shared store (the workers' token file, or Redis), which is what every process
uses; its counters (logins, refreshes, failures) are every worker's too.

Without a shared store (`token_store: memory`, or one process with its own file) the process's
own token is the truth, and it is shown. A store that does not answer is the same: the page shows
this process's copy rather than failing, and says which it is (`source`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

import structlog

from authproxy.auth.grant import Grant
from authproxy.auth.ports import SharedStore
from authproxy.auth.stats import TokenStatus
from authproxy.errors import StoreUnavailable
from authproxy.gateway.endpoints import FleetView
from authproxy.gateway.metrics import SEP, Counts, Metrics

if TYPE_CHECKING:
    from authproxy.auth.manager import TokenManager

log = structlog.get_logger("authproxy.server.fleet")

Gather = Callable[[], Awaitable["Counts | None"]]


class Fleet:
    """The `gateway.endpoints.Fleet` of one process: its counts, and the supervisor's sum."""

    def __init__(
        self,
        metrics: Metrics,
        managers: Callable[[], Mapping[str, TokenManager]],
        now: Callable[[], float],
        workers: int,
    ) -> None:
        self.workers = workers
        self.shared: SharedStore | None = None  # set once the stores are open
        self.gather: Gather | None = None  # set in a worker: every worker's counts, summed
        self._metrics = metrics
        self._managers = managers
        self._now = now

    def own_counts(self) -> Counts:
        """This process's counts, as the supervisor asks for them."""
        now = self._now()
        return self._metrics.counts(
            {name: manager.status(now) for name, manager in self._managers().items()}
        )

    async def view(self) -> FleetView:
        now = self._now()
        managers = dict(self._managers())
        counts = await self._counts()
        # At once: a store that does not answer costs one timeout, not one per route.
        stored = await asyncio.gather(*(self._stored(manager) for manager in managers.values()))
        tokens: dict[str, TokenStatus] = {}
        from_store: set[str] = set()
        for (name, manager), grant in zip(managers.items(), stored, strict=True):
            status = with_counts(manager.status(now), counts, name)
            if grant is not None:
                status = with_grant(status, grant, manager.spec.renew_at, now)
                from_store.add(name)
            tokens[name] = status
        return FleetView(counts, tokens, frozenset(from_store), self.workers)

    async def _counts(self) -> Counts:
        if self.gather is not None:
            gathered = await self.gather()
            if gathered is not None:
                return gathered
            log.warning("the supervisor did not sum the workers' counts; showing this worker's")
        return self.own_counts()

    async def _stored(self, manager: TokenManager) -> Grant | None:
        if self.shared is None or manager.spec.is_static:
            return None
        try:
            return await self.shared.load(manager.store_key)
        except StoreUnavailable:
            return None


def with_counts(status: TokenStatus, counts: Counts, route: str) -> TokenStatus:
    """`status` with the login, refresh and failure counts of every process in `counts`."""
    logins = _by_outcome(counts["logins"], route)
    refreshes = _by_outcome(counts["refreshes"], route)
    return replace(
        status,
        logins=int(sum(logins.values())),
        refreshes=int(sum(refreshes.values())),
        failures=int(counts["failures"].get(route, 0)),
        login_outcomes=logins,
        refresh_outcomes=refreshes,
    )


def _by_outcome(series: Mapping[str, float], route: str) -> dict[str, int]:
    prefix = f"{route}{SEP}"
    return {
        key.removeprefix(prefix): int(count)
        for key, count in series.items()
        if key.startswith(prefix)
    }


def with_grant(status: TokenStatus, grant: Grant, renew_at: float, now: float) -> TokenStatus:
    """`status` describing `grant`, the shared token, instead of this process's copy."""
    usable = not grant.expired(now)
    if status.state == "failed":
        state = "failed"  # this process's logins fail and back off: its requests get 502s
    elif not usable:
        state = "expired"
    elif grant.expires_at is not None and now >= grant.obtained_at + renew_at * (
        grant.expires_at - grant.obtained_at
    ):
        state = "expiring"
    else:
        state = "valid"
    return replace(
        status,
        state=state,
        usable=usable,
        expires_at=grant.expires_at,
        obtained_at=grant.obtained_at,
    )
