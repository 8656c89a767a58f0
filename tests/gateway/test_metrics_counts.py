"""`Counts`: what one process counted, summed over workers, and rendered as Prometheus text."""

from __future__ import annotations

import json
import subprocess
import sys

from authproxy.gateway.metrics import Metrics, merge, no_counts, render, retired


def counted(requests: int, upstream_ms: float, in_flight: int = 0) -> Metrics:
    metrics = Metrics()
    for _ in range(requests):
        metrics.request_done("api", "alice", 200, upstream_ms)
    metrics.request_done(None, None, 401, None)
    metrics.in_flight.value = in_flight
    return metrics


def test_counts_survive_the_channel_and_sum_over_workers() -> None:
    one = json.loads(json.dumps(counted(3, 4.0, in_flight=1).counts({})))
    two = json.loads(json.dumps(counted(2, 40.0).counts({})))
    total = merge([one, two])
    assert total["requests"]["api|alice|200"][0] == 5
    assert total["requests"]["||401"][0] == 2
    assert total["requests"]["api|alice|200"][1] == min(
        one["requests"]["api|alice|200"][1], two["requests"]["api|alice|200"][1]
    )
    assert total["in_flight"] == 1
    text = render(total, {}, 0.0, workers=2).decode()
    assert 'authproxy_requests_total{client="alice",route="api",status="200"} 5.0' in text
    assert 'authproxy_upstream_seconds_bucket{le="0.005",route="api"} 3.0' in text
    assert 'authproxy_upstream_seconds_bucket{le="0.05",route="api"} 5.0' in text
    assert 'authproxy_upstream_seconds_count{route="api"} 5.0' in text
    assert 'authproxy_upstream_seconds_sum{route="api"} 0.092' in text
    assert "authproxy_workers 2.0" in text
    assert "authproxy_in_flight_requests 1.0" in text


def test_a_retired_worker_keeps_its_counts_but_nothing_in_flight() -> None:
    gone = retired(counted(4, 1.0, in_flight=3).counts({}))
    assert gone["in_flight"] == 0
    assert merge([no_counts(), gone])["requests"]["api|alice|200"][0] == 4


def test_serving_does_not_load_prometheus_client_until_the_first_scrape() -> None:
    # A fresh interpreter: this one has loaded it for the tests above.
    probe = (
        "import sys, authproxy.cli.main, authproxy.server.app\n"
        "assert 'prometheus_client' not in sys.modules, 'loaded at start'\n"
        "from authproxy.gateway.metrics import no_counts, render\n"
        "assert render(no_counts(), {}, 0.0).startswith(b'# HELP')\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    argv = [sys.executable, "-c", probe]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
