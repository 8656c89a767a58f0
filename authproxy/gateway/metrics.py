"""Prometheus metrics for `/-/metrics`, on a registry of the proxy's own (not the global one).

Request counters are plain numbers on the hot path, turned into metric families at scrape time;
token metrics are read from the token managers at scrape time, so nothing is kept twice.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from typing import cast

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from authproxy.auth.stats import TokenStatus

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# The `le` labels exactly as prometheus_client's own Histogram writes them.
_le = cast(Callable[[float], str], floatToGoString)
_BUCKET_NAMES = [*(_le(bound) for bound in UPSTREAM_BUCKETS), "+Inf"]


class TokenCollector(Collector):
    """Logins, refreshes and seconds left, from each route's token snapshot at scrape time."""

    def __init__(
        self, tokens: Callable[[], Mapping[str, TokenStatus]], now: Callable[[], float]
    ) -> None:
        self._tokens = tokens
        self._now = now

    def collect(self) -> Iterator[Metric]:
        logins = CounterMetricFamily(
            "authproxy_logins", "Logins to upstreams, by outcome", labels=["route", "outcome"]
        )
        refreshes = CounterMetricFamily(
            "authproxy_refreshes", "Token refreshes, by outcome", labels=["route", "outcome"]
        )
        expiry = GaugeMetricFamily(
            "authproxy_token_expiry_seconds",
            "Seconds until the current token expires (absent when unknown or none)",
            labels=["route"],
        )
        now = self._now()
        for route, token in self._tokens().items():
            for outcome, count in token.login_outcomes.items():
                logins.add_metric([route, outcome], count)
            for outcome, count in token.refresh_outcomes.items():
                refreshes.add_metric([route, outcome], count)
            if token.expires_at is not None:
                expiry.add_metric([route], token.expires_at - now)
        yield logins
        yield refreshes
        yield expiry


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


class RequestCollector(Collector):
    """Request counts, upstream latencies and requests in flight.

    prometheus_client's own Counter, Histogram and Gauge take a lock and walk the buckets in
    Python for every observation, four times per request. These are plain numbers updated
    by the one event-loop thread, turned into the same metric families only when scraped.
    """

    def __init__(self) -> None:
        self.in_flight = Level()
        self.requests: dict[tuple[str, str, int], list[float]] = {}  # [count, created]
        self.upstream: dict[str, _Histogram] = {}

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "authproxy_requests",
            "Requests answered, by route, client and status",
            labels=["route", "client", "status"],
        )
        for (route, client, status), (count, created) in list(self.requests.items()):
            requests.add_metric([route, client, str(status)], count, created=created)
        yield requests
        upstream = HistogramMetricFamily(
            "authproxy_upstream_seconds",
            "Time to the upstream's answer headers, by route",
            labels=["route"],
        )
        for route, histogram in list(self.upstream.items()):
            cumulative = list(itertools.accumulate(histogram.buckets))
            upstream.add_metric(
                [route], [*zip(_BUCKET_NAMES, cumulative, strict=True)], histogram.total
            )
            upstream.samples.append(
                Sample("authproxy_upstream_seconds_created", {"route": route}, histogram.created)
            )
        yield upstream
        in_flight = GaugeMetricFamily("authproxy_in_flight_requests", "Requests being handled now")
        in_flight.add_metric([], self.in_flight.value)
        yield in_flight


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._collector = RequestCollector()
        self.registry.register(self._collector)
        self.in_flight = self._collector.in_flight

    def watch_tokens(
        self, tokens: Callable[[], Mapping[str, TokenStatus]], now: Callable[[], float]
    ) -> None:
        self.registry.register(TokenCollector(tokens, now))

    def request_done(
        self, route: str | None, client: str | None, status: int, upstream_ms: float | None
    ) -> None:
        collector = self._collector
        key = (route or "", client or "", status)
        counted = collector.requests.get(key)
        if counted is None:
            collector.requests[key] = [1.0, time.time()]
        else:
            counted[0] += 1
        if route is not None and upstream_ms is not None:
            histogram = collector.upstream.get(route)
            if histogram is None:
                histogram = collector.upstream[route] = _Histogram()
            seconds = upstream_ms / 1000
            # Prometheus buckets are "less than or equal": bisect_left finds the first bound >= x.
            histogram.buckets[bisect.bisect_left(UPSTREAM_BUCKETS, seconds)] += 1
            histogram.total += seconds

    def render(self) -> bytes:
        return generate_latest(self.registry)
