"""`make soak`: authproxy under token churn for minutes or hours, and a verdict on what stays flat.

The configuration that once grew from 57 to 697 MiB in 15 minutes: the five login presets as routes
of one `authproxy serve` process, in front of the built-in emulators with 6-second tokens,
CucumberStudio rotating its token on every answer, every token of one API revoked every 20 s
(the APIs take turns), and about 20 requests a second of mixed GET and POST with small JSON bodies,
spread over the routes. By default a second run does the same with `--workers 2` and the token
file shared between the workers; both run side by side.

Each run prints one line a minute: resident memory and open descriptors of the proxy's processes,
the asyncio tasks of the process that answered `/-/status`, requests, what clients saw (401, 5xx),
and logins and refreshes per API as the emulators counted them. The verdict fails a run when:
- resident memory grows by more than 10 MiB after minute 2;
- open descriptors keep growing: the median of the last quarter of the run is more than a small
  slack above that of its first half, both after minute 2 (single samples vary with the
  connections open at that instant); a run of under 8 minutes is too short to judge;
- any client sees a 401 or a 5xx;
- an API counted more logins than one per token, plus one per revocation, plus the first. A
  token is renewed at 80% of its life (less up to 5% of jitter, and a JWT's whole-second `exp`
  takes up to a second off a 6-second life), so "one per token" is one per 0.75 x 5 s here. A
  rotating API (CucumberStudio) gets its budget once per worker: one devise session cannot be
  shared between processes (see the README), so each worker signs in for itself, and a worker
  that the kernel sends no request for a while renews its session by signing in.

    .venv/bin/python bench/soak.py --minutes 60 --out bench/results/soak-60min.md
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify
from authproxy.emulators.common import EmulatorState, emulator_state

MIB = 1024 * 1024
RENEW_AT, JITTER = 0.8, 0.05
RSS_GROWTH_LIMIT = 10 * MIB
FD_SLACK = 4
MIN_LATER_SAMPLES = 6  # minutes after minute 2: a shorter run cannot tell a level from a peak
SAMPLE_PATHS = {
    "cosmic": "/v1/buckets/soak",
    "coco": "/account/profile",
    "crux": "/api/v1/orders/",
    "cucumberstudio": "/api/projects",
    "emnify": "/api/v1/endpoint",
}
ROTATING = frozenset({"cucumberstudio"})


def emulator_apps(lifetime: int) -> dict[str, web.Application]:
    return {
        "cosmic": cosmic.make_app(cosmic.CosmicSettings(token_lifetime=lifetime)),
        "coco": coco.make_app(coco.CocoSettings(token_lifetime=lifetime)),
        "crux": crux.make_app(crux.CruxSettings(token_lifetime=lifetime)),
        "cucumberstudio": cucumberstudio.make_app(
            cucumberstudio.CucumberStudioSettings(token_lifetime=lifetime, rotate_tokens=True)
        ),
        "emnify": emnify.make_app(emnify.EmnifySettings(token_lifetime=lifetime)),
    }


CREDENTIALS = {
    "cosmic": cosmic.DEMO_CREDENTIALS,
    "coco": {k: v for k, v in coco.DEMO_CREDENTIALS.items() if k != "api_token"},
    "crux": crux.DEMO_CREDENTIALS,
    "cucumberstudio": cucumberstudio.DEMO_CREDENTIALS,
    "emnify": {k: v for k, v in emnify.DEMO_CREDENTIALS.items() if k != "application_token"},
}


@dataclass
class Sample:
    minute: int
    rss: int
    fds: int
    tasks: int | None
    requests: int
    refused: int
    failed: int
    logins: dict[str, int]
    refreshes: dict[str, int]


@dataclass
class Run:
    label: str
    workers: int
    minutes: float
    rate: float
    lifetime: int
    revoke_every: float
    workdir: Path
    states: dict[str, EmulatorState] = field(default_factory=dict)
    revocations: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # what clients saw go wrong, by API
    samples: list[Sample] = field(default_factory=list)
    process: asyncio.subprocess.Process | None = None
    url: str = ""
    log_path: Path | None = None

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.errors.values())


# ---- the pieces ----------------------------------------------------------------------------


async def serve_emulators(run: Run, stack: contextlib.AsyncExitStack) -> dict[str, str]:
    urls = {}
    for name, app in emulator_apps(run.lifetime).items():
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        urls[name] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        run.states[name] = emulator_state(app)
    return urls


def write_config(run: Run, urls: dict[str, str]) -> Path:
    routes = {
        name: {"upstream": url, "auth": {"preset": name, **CREDENTIALS[name]}}
        for name, url in urls.items()
    }
    document = {
        "listen": "127.0.0.1:0",
        "token_store": str(run.workdir / "tokens.json"),
        "routes": routes,
    }
    path = run.workdir / "config.yaml"
    path.write_text(json.dumps(document))  # JSON is YAML
    return path


async def start_proxy(run: Run, config: Path, stack: contextlib.AsyncExitStack) -> None:
    run.log_path = run.workdir / "authproxy.log"
    log = run.log_path.open("w")
    stack.callback(log.close)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        str(config),
        "--workers",
        str(run.workers),
        "--log-format",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    run.process = process
    assert process.stdout is not None
    while not run.url:
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line:
            raise SystemExit(f"{run.label}: authproxy exited before listening")
        log.write(line.decode(errors="replace"))
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if event.get("event") == "authproxy listening":
                run.url = event["url"]

    async def drain() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            log.write(line.decode(errors="replace"))

    drainer = asyncio.ensure_future(drain())  # noqa: TID251 - a script, not the proxy
    stack.push_async_callback(stop_proxy, process, drainer)


async def stop_proxy(process: asyncio.subprocess.Process, drainer: asyncio.Future[None]) -> None:
    if process.returncode is None:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()
    await asyncio.wait_for(drainer, 30)


async def load(run: Run, http: aiohttp.ClientSession, stop: asyncio.Event) -> None:
    """`rate` requests a second, each on its own, round-robin over routes, GET and POST."""
    names = itertools.cycle(SAMPLE_PATHS)
    interval = 1 / run.rate
    pending: set[asyncio.Future[None]] = set()
    started = time.monotonic()
    for count in itertools.count():
        if stop.is_set():
            break
        name = next(names)
        method = "POST" if count % 2 else "GET"
        task = asyncio.ensure_future(one_request(run, http, name, method, count))  # noqa: TID251
        pending.add(task)
        task.add_done_callback(pending.discard)
        delay = started + (count + 1) * interval - time.monotonic()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    if pending:
        await asyncio.wait(pending, timeout=30)


async def one_request(
    run: Run, http: aiohttp.ClientSession, name: str, method: str, count: int
) -> None:
    url = f"{run.url}/{name}{SAMPLE_PATHS[name]}"
    body = json.dumps({"n": count, "note": "soak"}).encode() if method == "POST" else None
    headers = {"Content-Type": "application/json"} if body else None
    try:
        async with http.request(method, url, data=body, headers=headers) as response:
            await response.read()
            run.statuses[response.status] += 1
            if response.status == 401 or response.status >= 500:
                run.failures[f"{name} {response.status}"] += 1
    except (aiohttp.ClientError, TimeoutError) as error:
        run.errors[f"{name} {type(error).__name__}"] += 1
        run.failures[f"{name} {type(error).__name__}"] += 1


async def revoke(run: Run, stop: asyncio.Event) -> None:
    """Every `revoke_every` seconds, every token of the next API in turn stops working."""
    for name in itertools.cycle(SAMPLE_PATHS):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), run.revoke_every)
        if stop.is_set():
            return
        run.states[name].revoke_all()
        run.revocations[name] += 1


# ---- readings ------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                children = Path(f"/proc/{current}/task/{task}/children").read_text()
                todo.extend(int(child) for child in children.split())
    return found


def rss_and_fds(pid: int) -> tuple[int, int]:
    rss = fds = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
            fds += len(os.listdir(f"/proc/{member}/fd"))
    return rss, fds


async def task_count(run: Run, http: aiohttp.ClientSession) -> int | None:
    try:
        async with http.get(f"{run.url}/-/status") as response:
            document: dict[str, Any] = await response.json()
    except (aiohttp.ClientError, ValueError, TimeoutError):
        return None
    process = document.get("process")
    return process.get("tasks") if isinstance(process, dict) else None


async def sample(run: Run, http: aiohttp.ClientSession, minute: int) -> Sample:
    assert run.process is not None
    rss, fds = rss_and_fds(run.process.pid)
    refused = sum(count for status, count in run.statuses.items() if status == 401)
    failed = sum(count for status, count in run.statuses.items() if status >= 500)
    failed += sum(run.errors.values())
    return Sample(
        minute,
        rss,
        fds,
        await task_count(run, http),
        run.requests,
        refused,
        failed,
        {name: state.logins for name, state in run.states.items()},
        {name: state.refreshes for name, state in run.states.items()},
    )


def row(run: Run, s: Sample) -> str:
    per_api = " ".join(f"{name[:5]} {s.logins[name]}/{s.refreshes[name]}" for name in s.logins)
    tasks = "-" if s.tasks is None else str(s.tasks)
    return (
        f"| {run.label} | {s.minute:>3} | {s.rss / MIB:7.1f} | {s.fds:>4} | {tasks:>5} "
        f"| {s.requests:>7} | {s.refused:>3} | {s.failed:>3} | {per_api} |"
    )


HEADER = (
    "| run | min | RSS MiB | fds | tasks | requests | 401 | 5xx | logins/refreshes per API |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


# ---- the verdict ---------------------------------------------------------------------------


def verdict(run: Run, elapsed: float) -> list[tuple[bool, str]]:
    samples = run.samples
    checks: list[tuple[bool, str]] = []
    early = [s for s in samples if s.minute <= 2] or samples[:1]
    base = early[-1]
    last = samples[-1]
    growth = last.rss - base.rss
    checks.append(
        (
            growth <= RSS_GROWTH_LIMIT,
            f"RSS {base.rss / MIB:.1f} MiB at minute {base.minute} -> {last.rss / MIB:.1f} MiB "
            f"at minute {last.minute} ({growth / MIB:+.1f} MiB; limit +10)",
        )
    )
    checks.append(_descriptors_check(samples[len(early) :] or [last]))
    checks.append((last.refused == 0, f"client-visible 401: {last.refused}"))
    checks.append((last.failed == 0, f"client-visible 5xx or errors: {last.failed}"))
    # One login per token: renewed at 80% of its life, less 5% jitter, and a JWT `exp` in whole
    # seconds can take a second off.
    tokens = math.ceil(elapsed / ((run.lifetime - 1) * (RENEW_AT - JITTER)))
    for name, logins in last.logins.items():
        budget = 1 + tokens + run.revocations[name]
        if name in ROTATING:
            budget *= run.workers
        checks.append(
            (
                logins <= budget,
                f"{name}: {logins} logins, {last.refreshes[name]} refreshes "
                f"(budget {budget}: {run.revocations[name]} revocations)",
            )
        )
    return checks


def _descriptors_check(later: list[Sample]) -> tuple[bool, str]:
    """Descriptors leak when their level keeps rising, so the level of the first half of the
    run after minute 2 is compared with that of its last quarter, each by its median. One
    sample is no evidence either way: each counts the client connections in flight and the
    upstream connections idle in the pools (closed after 30 s) at that instant, so a burst of
    overlapping requests shows as a peak that is gone a minute later."""
    if len(later) < MIN_LATER_SAMPLES:
        return False, f"open fds: {len(later)} samples after minute 2, too few to judge"
    first, last = later[: len(later) // 2], later[-max(2, len(later) // 4) :]
    before = statistics.median(s.fds for s in first)
    after = statistics.median(s.fds for s in last)
    peak = max(later, key=lambda s: s.fds)
    return (
        after <= before + FD_SLACK,
        f"open fds: median {before:g} in minutes {first[0].minute}-{first[-1].minute}, "
        f"{after:g} in minutes {last[0].minute}-{last[-1].minute} "
        f"(peak {peak.fds} at minute {peak.minute})",
    )


# ---- one run, and the whole soak -----------------------------------------------------------


async def soak(run: Run, report: list[str]) -> bool:
    async with contextlib.AsyncExitStack() as stack:
        urls = await serve_emulators(run, stack)
        await start_proxy(run, write_config(run, urls), stack)
        # A few client connections, kept: each one the client opens is a descriptor in the proxy,
        # and an unbounded pool would make the proxy's descriptors follow the client's bursts.
        connector = aiohttp.TCPConnector(limit=8)
        timeout = aiohttp.ClientTimeout(total=60)
        http = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout)
        )
        stop = asyncio.Event()
        started = time.monotonic()
        workers = [
            asyncio.ensure_future(load(run, http, stop)),  # noqa: TID251
            asyncio.ensure_future(revoke(run, stop)),  # noqa: TID251
        ]
        run.samples.append(await sample(run, http, 0))
        print(row(run, run.samples[-1]), flush=True)
        for minute in itertools.count(1):
            deadline = started + minute * 60
            if minute > run.minutes:
                break
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
            run.samples.append(await sample(run, http, minute))
            print(row(run, run.samples[-1]), flush=True)
        stop.set()
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - started
        run.samples[-1] = await sample(run, http, run.samples[-1].minute)
    checks = verdict(run, elapsed)
    report.append(f"\n**{run.label}** ({run.workers} worker(s)), {elapsed / 60:.1f} minutes:\n")
    report.extend(f"- {'PASS' if ok else 'FAIL'}: {text}" for ok, text in checks)
    if run.failures:
        report.append(f"- client-visible failures by API: {dict(run.failures)}")
    return all(ok for ok, _ in checks)


async def main(args: argparse.Namespace) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="authproxy-soak-"))
    runs = []
    for workers in args.workers:
        label = f"w{workers}"
        (workdir / label).mkdir()
        runs.append(
            Run(
                label,
                workers,
                args.minutes,
                args.rate,
                args.lifetime,
                args.revoke_every,
                workdir / label,
            )
        )
    print(
        f"authproxy soak: {args.minutes:g} minutes, {args.rate:g} requests/s a run, "
        f"{args.lifetime} s tokens, a revocation every {args.revoke_every:g} s; "
        f"logs in {workdir}\n\n{HEADER}",
        flush=True,
    )
    report: list[str] = []
    results = await asyncio.gather(*(soak(run, report) for run in runs))
    text = "\n".join(report)
    print(text)
    if args.out:
        table = "\n".join(row(run, s) for run in runs for s in run.samples)
        args.out.write_text(
            f"# authproxy soak, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n\n"
            f"{args.minutes:g} minutes; {args.rate:g} requests/s a run; "
            f"{args.lifetime} s tokens; CucumberStudio rotating on every answer; one API's "
            f"tokens revoked every {args.revoke_every:g} s (in turn).\n\n{HEADER}\n{table}\n"
            f"{text}\n"
        )
    verdict_line = "PASS" if all(results) else "FAIL"
    print(f"\nsoak verdict: {verdict_line}")
    return 0 if all(results) else 1


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10, help="length of the run (default 10)")
    parser.add_argument(
        "--workers",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 2],
        help="worker counts to run side by side (default: 1,2)",
    )
    parser.add_argument("--rate", type=float, default=20, help="requests/s of each run")
    parser.add_argument("--lifetime", type=int, default=6, help="token lifetime in seconds")
    parser.add_argument(
        "--revoke-every", type=float, default=20, help="seconds between revocations"
    )
    parser.add_argument("--out", type=Path, help="write the table and verdict here (Markdown)")
    return parser.parse_args()


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
