"""One view of the numbers with `serve --workers N`: whichever worker answers a scrape, the totals
are the same, the token metrics describe the shared token, and counters never go backwards, not
even when a worker dies. Real supervisor and workers; the cosmic emulator counts the logins.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from supervised import Supervisor, is_event, many, supervisor, upstreams, write_config

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text page, None if absent."""
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found is None or found["name"] != name:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"] or ""))
        if pairs == labels:
            return float(found["value"])
    return None


async def fetch(url: str) -> tuple[str, dict[str, Any]]:
    """`/-/metrics` and `/-/status`, each on a new connection (so the kernel picks a worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.get(f"{url}/-/metrics") as answer:
            assert answer.status == 200
            metrics = await answer.text()
        async with client.get(f"{url}/-/status") as answer:
            assert answer.status == 200
            status = await answer.json()
    return metrics, status


async def scrapes_from_every_worker(
    running: Supervisor, workers: int
) -> list[tuple[str, dict[str, Any]]]:
    """Scrape until every worker answered at least once (bounded); every page, in order."""
    pages: list[tuple[str, dict[str, Any]]] = []
    answered: set[int] = set()
    for _ in range(50 * workers):
        metrics, status = await fetch(running.url)
        pages.append((metrics, status))
        answered.add(status["process"]["pid"])
        if len(answered) == workers and len(pages) >= 2 * workers:
            return pages
    raise AssertionError(f"only {len(answered)} of {workers} workers answered")


@pytest.mark.parametrize("workers", [2, 4])
async def test_every_worker_answers_a_scrape_with_the_same_totals(
    tmp_path: Path, workers: int
) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"))
        async with supervisor(config, workers) as running:
            paths = [f"/cosmic/v1/buckets/{i}" for i in range(40)]
            assert await many(running.url, paths) == [200] * 40
            pages = await scrapes_from_every_worker(running, workers)
            for metrics, status in pages:
                series = {"route": "cosmic", "client": "", "status": "200"}
                assert sample(metrics, "authproxy_requests_total", **series) == 40
                assert sample(metrics, "authproxy_upstream_seconds_count", route="cosmic") == 40
                assert sample(metrics, "authproxy_logins_total", route="cosmic", outcome="ok") == 1
                assert sample(metrics, "authproxy_workers") == workers
                expiry = sample(metrics, "authproxy_token_expiry_seconds", route="cosmic")
                assert expiry is not None
                assert expiry > 0
                assert status["workers"] == workers
                token = status["routes"]["cosmic"]["token"]
                assert (token["state"], token["source"], token["logins"]) == ("valid", "store", 1)
            assert ups.state.login_attempts == 1
            assert await running.exit_code() == 0


async def test_counters_never_go_backwards_when_a_worker_dies(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"))
        async with supervisor(config, 2) as running:
            assert await many(running.url, [f"/plain/a/{i}" for i in range(30)]) == [200] * 30
            served_by_zero = running.matching(
                lambda e: e.get("event") == "request" and e.get("worker") == 0
            )
            assert served_by_zero, "\n".join(running.lines)
            before, _ = await fetch(running.url)
            series = {"route": "plain", "client": "", "status": "200"}
            assert sample(before, "authproxy_requests_total", **series) == 30
            os.kill(running.worker_pid(0), signal.SIGKILL)
            await running.wait_for(
                "worker 0 restarted", lambda e: is_event(e, "worker restarted", worker=0)
            )
            for _ in range(6):
                after, _ = await fetch(running.url)
                assert sample(after, "authproxy_requests_total", **series) == 30
            assert await many(running.url, [f"/plain/b/{i}" for i in range(10)]) == [200] * 10
            later, _ = await fetch(running.url)
            assert sample(later, "authproxy_requests_total", **series) == 40
            assert await running.exit_code() == 0


async def test_status_and_metrics_of_memory_tokens_say_they_are_each_process_own(
    tmp_path: Path,
) -> None:
    """Without a shared store each worker holds its own token: the page shows the answering
    worker's, says so, and still counts every worker's logins."""
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory")
        async with supervisor(config, 2) as running:
            paths = [f"/cosmic/v1/buckets/{i}" for i in range(40)]
            assert await many(running.url, paths) == [200] * 40
            metrics, status = await fetch(running.url)
            token = status["routes"]["cosmic"]["token"]
            assert token["source"] == "process"
            logins = ups.state.login_attempts
            assert token["logins"] == logins
            ok = sample(metrics, "authproxy_logins_total", route="cosmic", outcome="ok")
            assert ok == logins
            assert json.dumps(status).count('"source"') == 1
            assert await running.exit_code() == 0
