"""The Prometheus text format of `Counts` (gateway/metrics.py), by prometheus_client.

Imported on the first scrape only (`metrics.render`): a proxy that is never scraped does not
load prometheus_client at all.
"""

from __future__ import annotations

import itertools
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
from authproxy.gateway.metrics import SEP, UPSTREAM_BUCKETS, Counts

# The `le` labels exactly as prometheus_client's own Histogram writes them.
_le = cast(Callable[[float], str], floatToGoString)
_BUCKET_NAMES = [*(_le(bound) for bound in UPSTREAM_BUCKETS), "+Inf"]


def prometheus_text(
    counts: Counts, tokens: Mapping[str, TokenStatus], now: float, workers: int
) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(counts, tokens, now, workers))
    return generate_latest(registry)


class _Families(Collector):
    def __init__(
        self, counts: Counts, tokens: Mapping[str, TokenStatus], now: float, workers: int
    ) -> None:
        self._counts = counts
        self._tokens = tokens
        self._now = now
        self._workers = workers

    def collect(self) -> Iterator[Metric]:
        counts = self._counts
        requests = CounterMetricFamily(
            "authproxy_requests",
            "Requests answered, by route, client and status",
            labels=["route", "client", "status"],
        )
        for key, (count, created) in sorted(counts["requests"].items()):
            requests.add_metric(key.split(SEP), count, created=created)
        yield requests
        yield _upstream(counts["upstream"])
        in_flight = GaugeMetricFamily("authproxy_in_flight_requests", "Requests being handled now")
        in_flight.add_metric([], counts["in_flight"])
        yield in_flight
        workers = GaugeMetricFamily("authproxy_workers", "Processes serving this port")
        workers.add_metric([], self._workers)
        yield workers
        yield from self._token_families()

    def _token_families(self) -> Iterator[Metric]:
        logins = CounterMetricFamily(
            "authproxy_logins", "Logins to upstreams, by outcome", labels=["route", "outcome"]
        )
        refreshes = CounterMetricFamily(
            "authproxy_refreshes", "Token refreshes, by outcome", labels=["route", "outcome"]
        )
        for family, series in (
            (logins, self._counts["logins"]),
            (refreshes, self._counts["refreshes"]),
        ):
            for key, count in sorted(series.items()):
                family.add_metric(key.split(SEP), count)
        yield logins
        yield refreshes
        expiry = GaugeMetricFamily(
            "authproxy_token_expiry_seconds",
            "Seconds until the current token expires (absent when unknown or none)",
            labels=["route"],
        )
        for route, token in self._tokens.items():
            if token.expires_at is not None:
                expiry.add_metric([route], token.expires_at - self._now)
        yield expiry


def _upstream(series: Mapping[str, list[float]]) -> Metric:
    upstream = HistogramMetricFamily(
        "authproxy_upstream_seconds",
        "Time to the upstream's answer headers, by route",
        labels=["route"],
    )
    for route, values in sorted(series.items()):
        *buckets, total, created = values
        cumulative = list(itertools.accumulate(buckets))
        upstream.add_metric([route], [*zip(_BUCKET_NAMES, cumulative, strict=True)], total)
        upstream.samples.append(
            Sample("authproxy_upstream_seconds_created", {"route": route}, created)
        )
    return upstream
