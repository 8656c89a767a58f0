"""Prometheus metrics for `/-/metrics`, on a registry of the proxy's own (not the global one).

Request counters are updated on the hot path through cached label children (one dict lookup);
token metrics are read from the token managers at scrape time, so nothing is kept twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from authproxy.auth.manager import TokenManager

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UPSTREAM_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class TokenCollector(Collector):
    """Logins, refreshes and seconds left, straight from each route's token manager."""

    def __init__(
        self, managers: Callable[[], Mapping[str, TokenManager]], now: Callable[[], float]
    ) -> None:
        self._managers = managers
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
        for route, manager in self._managers().items():
            for outcome, count in manager.stats.login_outcomes.items():
                logins.add_metric([route, outcome], count)
            for outcome, count in manager.stats.refresh_outcomes.items():
                refreshes.add_metric([route, outcome], count)
            grant = manager.current_grant
            if grant is not None and grant.expires_at is not None:
                expiry.add_metric([route], grant.expires_at - now)
        yield logins
        yield refreshes
        yield expiry


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "authproxy_requests",
            "Requests answered, by route, client and status",
            ["route", "client", "status"],
            registry=self.registry,
        )
        self._upstream = Histogram(
            "authproxy_upstream_seconds",
            "Time to the upstream's answer headers, by route",
            ["route"],
            buckets=UPSTREAM_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "authproxy_in_flight_requests", "Requests being handled now", registry=self.registry
        )
        self._request_children: dict[tuple[str, str, int], Counter] = {}
        self._upstream_children: dict[str, Histogram] = {}

    def watch_tokens(
        self, managers: Callable[[], Mapping[str, TokenManager]], now: Callable[[], float]
    ) -> None:
        self.registry.register(TokenCollector(managers, now))

    def request_done(
        self, route: str | None, client: str | None, status: int, upstream_ms: float | None
    ) -> None:
        route_label = route or ""
        key = (route_label, client or "", status)
        child = self._request_children.get(key)
        if child is None:
            child = self._requests.labels(route_label, client or "", str(status))
            self._request_children[key] = child
        child.inc()
        if route is not None and upstream_ms is not None:
            histogram = self._upstream_children.get(route)
            if histogram is None:
                histogram = self._upstream_children[route] = self._upstream.labels(route)
            histogram.observe(upstream_ms / 1000)

    def render(self) -> bytes:
        return generate_latest(self.registry)
