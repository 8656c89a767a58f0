"""Prometheus metrics for `/-/metrics`: counted in plain numbers, summed over workers, rendered.

Counting is on the hot path, so it is plain numbers updated by the one event-loop thread
(prometheus_client's own Counter, Histogram and Gauge take a lock and walk the buckets in Python
for every observation, four times per request). At scrape time they become `Counts`, a plain
JSON document that the supervisor of `serve --workers N` sums over every worker
(server/supervisor.py), and that is rendered with the token metrics of the shared token.

Why the supervisor sums, and not prometheus_client's multiprocess mode: that mode counts through
its own metric objects, backed by memory-mapped files, with a lock and a write per observation,
several times the hot path's cost here; it does not take custom collectors, while the token
metrics are read from the token store at scrape time, not counted; and its directory must be
emptied between runs. The supervisor already has a channel to every worker, and keeps the
counts of workers that exited, so a counter never goes backwards while it runs.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable, Mapping
from typing import TypedDict

from authproxy.auth.stats import TokenStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Joins the labels of one series into a JSON key. Route and client names cannot hold it.
SEP = "|"


class Counts(TypedDict):
    """What one process counted, or the sum over processes; plain JSON for the channel.

    requests: "route|client|status" -> [count, created]
    upstream: route -> [per-bucket counts (+Inf last, not cumulative)..., sum, created]
    logins, refreshes: "route|outcome" -> count; failures: route -> count
    """

    requests: dict[str, list[float]]
    upstream: dict[str, list[float]]
    in_flight: int
    logins: dict[str, float]
    refreshes: dict[str, float]
    failures: dict[str, float]


def no_counts() -> Counts:
    return Counts(requests={}, upstream={}, in_flight=0, logins={}, refreshes={}, failures={})


class Level:
    """A gauge that goes up and down on the hot path: a plain number, read at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1


class _Histogram:
    __slots__ = ("buckets", "created", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(UPSTREAM_BUCKETS) + 1)  # the last one is +Inf; no cumulation
        self.total = 0.0
        self.created = time.time()


class Metrics:
    """This process's counters: `request_done` on the hot path, `counts` at scrape time."""

    def __init__(self) -> None:
        self.in_flight = Level()
        self._requests: dict[tuple[str, str, int], list[float]] = {}  # [count, created]
        self._upstream: dict[str, _Histogram] = {}

    def request_done(
        self, route: str | None, client: str | None, status: int, upstream_ms: float | None
    ) -> None:
        key = (route or "", client or "", status)
        counted = self._requests.get(key)
        if counted is None:
            self._requests[key] = [1.0, time.time()]
        else:
            counted[0] += 1
        if route is not None and upstream_ms is not None:
            histogram = self._upstream.get(route)
            if histogram is None:
                histogram = self._upstream[route] = _Histogram()
            seconds = upstream_ms / 1000
            # Prometheus buckets are "less than or equal": bisect_left finds the first bound >= x.
            histogram.buckets[bisect.bisect_left(UPSTREAM_BUCKETS, seconds)] += 1
            histogram.total += seconds

    def counts(self, tokens: Mapping[str, TokenStatus]) -> Counts:
        """Everything counted so far, with the logins of `tokens` (this process's managers)."""
        counts = no_counts()
        counts["in_flight"] = self.in_flight.value
        for (route, client, status), (count, created) in list(self._requests.items()):
            counts["requests"][SEP.join((route, client, str(status)))] = [count, created]
        for route, histogram in list(self._upstream.items()):
            counts["upstream"][route] = [*histogram.buckets, histogram.total, histogram.created]
        for route, token in tokens.items():
            for outcome, count in token.login_outcomes.items():
                counts["logins"][f"{route}{SEP}{outcome}"] = count
            for outcome, count in token.refresh_outcomes.items():
                counts["refreshes"][f"{route}{SEP}{outcome}"] = count
            counts["failures"][route] = token.failures
        return counts


def merge(parts: Iterable[Counts]) -> Counts:
    """The sum of several processes' counts; a series' `created` is its earliest."""
    total = no_counts()
    for part in parts:
        for key, (count, created) in part["requests"].items():
            mine = total["requests"].setdefault(key, [0.0, created])
            mine[0] += count
            mine[1] = min(mine[1], created)
        for route, values in part["upstream"].items():
            mine = total["upstream"].setdefault(route, [0.0] * (len(values) - 1) + [values[-1]])
            for index in range(len(values) - 1):  # the buckets and the sum; `created` is last
                mine[index] += values[index]
            mine[-1] = min(mine[-1], values[-1])
        total["in_flight"] += part["in_flight"]
        _add(total["logins"], part["logins"])
        _add(total["refreshes"], part["refreshes"])
        _add(total["failures"], part["failures"])
    return total


def _add(sums: dict[str, float], more: Mapping[str, float]) -> None:
    for key, count in more.items():
        sums[key] = sums.get(key, 0) + count


def retired(counts: Counts) -> Counts:
    """The counts of a process that exited: kept as they are, but nothing is in flight there."""
    kept = counts.copy()
    kept["in_flight"] = 0
    return kept


def render(
    counts: Counts, tokens: Mapping[str, TokenStatus], now: float, *, workers: int = 1
) -> bytes:
    """The Prometheus text of `counts`, and of the token metrics in `tokens` (seconds left)."""
    # prometheus_client (30 modules, about 1 MiB resident) is loaded on the first scrape, not at
    # start: counting needs none of it, and many proxies are never scraped.
    from authproxy.gateway.metrics_text import prometheus_text

    return prometheus_text(counts, tokens, now, workers)
