"""`make bench`: how much authproxy costs over direct access, a naive aiohttp proxy and nginx.

What runs (all on 127.0.0.1, all started and stopped by this script):
- an upstream: nginx when it can be had (installed with apt-get if missing), else an aiohttp
  low-level server. It serves `/1k` (1 KB), `/100m` (100 MB), accepts `PUT /upload` (50 MB, read
  in full before it answers) and `POST /v1/authenticate` (a fixed JWT expiring in 2100). The
  data paths answer 401 unless `Authorization: Bearer <that JWT>` is present: every measured
  request therefore proves the header arrived.
- the targets, in this order in every round: `direct` (client → upstream), `naive`
  (naive_proxy.py: the simplest aiohttp proxy, the floor), `authproxy` (route `/api` with the
  `cosmic` preset, warm login, memory token store, JSON access log to a file), and `nginx` (a
  reverse proxy setting the header itself; only when nginx is installed). For direct and naive
  the client sends the header; authproxy and nginx inject it.

Placement (with taskset): the proxy under test on CPU 0; wrk, curl, the upstream and this runner
on CPU 1. Direct runs use the same CPU 1 for wrk and upstream.

Per target and round, after a short warm-up at the same concurrency:
- 1 KB GETs over 50 keep-alive connections for BENCH_DURATION seconds (wrk; a Python load
  generator only if wrk cannot be installed): req/s, p50/p99 latency, and the proxy's CPU time
  (utime+stime of its process tree from /proc/<pid>/stat) divided by requests;
- 1 KB GETs over 1 connection for half that time: p50, and the p50 added over direct;
- 100 MB downloads and 50 MB uploads with curl (3 each, median): MiB/s, with the proxy's RSS
  sampled every 5 ms meanwhile for the peak.
Rounds alternate targets so drift hits all of them alike; ratios to direct (and authproxy to
naive) are taken within each round, then reported as median [min–max] over rounds.

Validity: any socket error or status >= 400 in any load run, any failed or short transfer, and
any login during measurement (authproxy's `/-/status` `logins` and the upstream's own login
count, before vs after) makes the run INVALID: printed loudly, exit status 1.

The far upstream: a second (Python) upstream answers `/1k` 5 ms late, as an API across a network
would; a second naive proxy leads there, and authproxy a second route (`/far`). Per round, after
the loopback targets, 1 KB GETs over 10 connections for BENCH_DURATION seconds through each: the
measure is CPU per request (neither proxy is saturated there: the requests wait, not the CPU).

Output: markdown tables (loopback, far upstream) and a verdict line per performance target,
printed and written to bench/results/<UTC time>.md and latest.md.
Environment: BENCH_ROUNDS (default 3), BENCH_DURATION (seconds, default 10), BENCH_LOOP
(authproxy's --loop: auto, asyncio or uvloop; default auto), BENCH_BUSY_POLL_US (authproxy's
`upstream.busy_poll_us`, default 0). `--profile` instead runs authproxy
under py-spy (or cProfile) for a fixed 1 KB load and prints its top functions (profiling.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from common import (
    BENCH_DIR,
    CLIENT_CPU,
    MIB,
    PROXY_CPU,
    PYTHON,
    bench_token,
    cpu_seconds,
    have,
    http_get,
    scratch_dir,
    stop_all,
)
from installs import ensure_all
from load import LoadGenerator, LoadResult, RssSampler, StreamResult, download, upload
from report import FarRounds, FarSample, Rounds, Sample, markdown
from servers import (
    Target,
    Upstream,
    authproxy_logins,
    far_target,
    start_authproxy,
    start_far_upstream,
    start_naive,
    start_nginx_proxy,
    start_upstream,
)

CONNECTIONS = 50
FAR_DELAY_MS = 5
FAR_CONNECTIONS = 10
WARMUP_SECONDS = 2
STREAM_REPEATS = 3


@dataclass(frozen=True)
class Plan:
    rounds: int
    duration: int
    loop: str
    busy_poll_us: int = 0

    @property
    def sequential_duration(self) -> int:
        return max(1, self.duration // 2)


@dataclass
class Verdict:
    problems: list[str] = field(default_factory=list)
    measured_requests: int = 0

    def fail(self, message: str) -> None:
        self.problems.append(message)
        print(f"bench: INVALID: {message}", flush=True)

    def check_load(self, target: str, what: str, result: LoadResult) -> None:
        self.measured_requests += result.requests
        if result.requests == 0:
            self.fail(f"{target} {what}: no request completed")
        if result.failures:
            self.fail(f"{target} {what}: {result.errors} (status = answers >= 400)")

    def check_stream(self, target: str, what: str, result: StreamResult) -> None:
        if not result.ok:
            self.fail(f"{target} {what}: {result.detail}")


def plan_from_env() -> Plan:
    rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
    duration = int(os.environ.get("BENCH_DURATION", "10"))  # wrk takes whole seconds
    loop = os.environ.get("BENCH_LOOP", "auto")
    busy_poll_us = int(os.environ.get("BENCH_BUSY_POLL_US", "0"))
    if rounds < 1 or duration <= 0 or loop not in ("auto", "asyncio", "uvloop"):
        raise SystemExit(
            "bench: BENCH_ROUNDS >= 1, BENCH_DURATION > 0, BENCH_LOOP auto|asyncio|uvloop"
        )
    return Plan(rounds, duration, loop, busy_poll_us)


class Bench:
    """One run: its targets, its verdict; `close` stops every process it started."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.verdict = Verdict()
        self.work = scratch_dir("bench")
        self.upload_source = self.work / "upload.bin"
        self.token = bench_token()
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.load = LoadGenerator(self.work)
        self.upstream: Upstream | None = None
        self.far_upstream: Upstream | None = None
        self.targets: list[Target] = []
        self.far_targets: list[Target] = []  # naive and authproxy, to the far upstream

    def start(self, use_nginx: bool) -> None:
        self.upstream = upstream = start_upstream(self.token, use_nginx, self.upload_source)
        self.far_upstream = far = start_far_upstream(self.token, FAR_DELAY_MS)
        self.targets.append(Target("direct", upstream.url, self.auth, None))
        self.targets.append(start_naive(upstream, self.work, self.auth))
        authproxy = start_authproxy(
            upstream, self.work, self.plan.loop, far=far, busy_poll_us=self.plan.busy_poll_us
        )
        self.targets.append(authproxy)
        if use_nginx:
            self.targets.append(start_nginx_proxy(upstream, self.token))
        naive_far = start_naive(far, self.work, self.auth, name="naive-far")
        self.far_targets = [
            Target("naive", naive_far.base_url, self.auth, naive_far.proc),
            far_target(authproxy),
        ]

    def close(self) -> None:
        stop_all()
        shutil.rmtree(self.work, ignore_errors=True)

    def sanity(self) -> None:
        """Before measuring: the upstream's guard works, and every target gets 200 for /1k."""
        assert self.upstream is not None
        status, _ = http_get(f"{self.upstream.url}/1k")
        if status != 401:
            self.verdict.fail(f"upstream answered {status} without the token: the guard is off")
        for target in self.targets:
            status, body = http_get(f"{target.base_url}/1k", target.client_headers)
            if status != 200 or len(body) != 1024:
                self.verdict.fail(f"{target.name}: /1k answered {status} with {len(body)} bytes")
        naive = self.target("naive")
        if http_get(f"{naive.base_url}/1k")[0] != 401:
            self.verdict.fail("naive proxy without the client's header did not get 401")

    def target(self, name: str) -> Target:
        return next(target for target in self.targets if target.name == name)

    def measure(self, target: Target, round_no: int) -> Sample:
        url = f"{target.base_url}/1k"
        headers = target.client_headers
        name = target.name
        self.verdict.check_load(
            name, "warm-up", self.load.run(url, CONNECTIONS, WARMUP_SECONDS, headers)
        )
        cpu_before = cpu_seconds(target.proc.pid) if target.proc else 0.0
        concurrent = self.load.run(url, CONNECTIONS, self.plan.duration, headers)
        cpu_after = cpu_seconds(target.proc.pid) if target.proc else 0.0
        self.verdict.check_load(name, f"round {round_no} c{CONNECTIONS}", concurrent)
        sequential = self.load.run(url, 1, self.plan.sequential_duration, headers)
        self.verdict.check_load(name, f"round {round_no} c1", sequential)
        down, up, peak = self.stream(target, round_no)
        cpu_us = None
        if target.proc and concurrent.requests:
            cpu_us = (cpu_after - cpu_before) * 1e6 / concurrent.requests
        return Sample(name, round_no, concurrent, sequential, down, up, peak, cpu_us)

    def measure_far(self, target: Target, round_no: int) -> FarSample:
        url = f"{target.base_url}/1k"
        headers = target.client_headers
        what = f"far {target.name}"
        self.verdict.check_load(what, "warm-up", self.load.run(url, FAR_CONNECTIONS, 1, headers))
        cpu_before = cpu_seconds(target.proc.pid) if target.proc else 0.0
        result = self.load.run(url, FAR_CONNECTIONS, self.plan.duration, headers)
        cpu_after = cpu_seconds(target.proc.pid) if target.proc else 0.0
        self.verdict.check_load(what, f"round {round_no} c{FAR_CONNECTIONS}", result)
        cpu_us = None
        if target.proc and result.requests:
            cpu_us = (cpu_after - cpu_before) * 1e6 / result.requests
        return FarSample(target.name, round_no, result, cpu_us)

    def stream(self, target: Target, round_no: int) -> tuple[float, float, float | None]:
        headers = target.client_headers
        sampler = RssSampler(target.proc.pid) if target.proc else None
        downs, ups = [], []
        with sampler.sampling() if sampler else contextlib.nullcontext():
            for _ in range(STREAM_REPEATS):
                got = download(f"{target.base_url}/100m", headers)
                self.verdict.check_stream(target.name, f"round {round_no} download", got)
                downs.append(got.mib_per_s)
                sent = upload(f"{target.base_url}/upload", headers, self.upload_source)
                self.verdict.check_stream(target.name, f"round {round_no} upload", sent)
                ups.append(sent.mib_per_s)
        peak = sampler.peak / MIB if sampler else None
        return statistics.median(downs), statistics.median(ups), peak

    def logins(self) -> tuple[int, int]:
        assert self.upstream is not None
        assert self.far_upstream is not None
        upstreams = self.upstream.logins() + self.far_upstream.logins()
        return authproxy_logins(self.target("authproxy")), upstreams

    def rounds(self) -> tuple[Rounds, FarRounds]:
        results: Rounds = {}
        far: FarRounds = {}
        for round_no in range(1, self.plan.rounds + 1):
            results[round_no] = {}
            far[round_no] = {}
            for target in self.targets:
                print(f"bench: round {round_no}/{self.plan.rounds}: {target.name}", flush=True)
                with self.no_logins(target.name, round_no):
                    results[round_no][target.name] = self.measure(target, round_no)
            # Alternate the order, so that drift within a round hits both alike.
            order = self.far_targets if round_no % 2 else self.far_targets[::-1]
            for target in order:
                print(f"bench: round {round_no}/{self.plan.rounds}: far {target.name}", flush=True)
                with self.no_logins(f"far {target.name}", round_no):
                    far[round_no][target.name] = self.measure_far(target, round_no)
        return results, far

    @contextlib.contextmanager
    def no_logins(self, what: str, round_no: int) -> Iterator[None]:
        before = self.logins()
        yield
        after = self.logins()
        if after != before:
            self.verdict.fail(
                f"logins during {what} round {round_no}: authproxy/upstream {before} -> {after}"
            )


def _version(argv: list[str]) -> str:
    if not have(argv[0]):
        return "not installed"
    done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    text = (done.stdout + done.stderr).strip().splitlines()
    # First line only, minus wrk's copyright notice.
    return text[0].partition(" [")[0].removeprefix("nginx version: ") if text else "?"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "?"


def _uvloop(loop: str) -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "off (not installed)" if loop != "uvloop" else "requested but missing"
    return "off (--loop asyncio)" if loop == "asyncio" else "on"


def header(bench: Bench, started: datetime, verdict_line: str) -> list[tuple[str, str]]:
    import aiohttp

    plan = bench.plan
    assert bench.upstream is not None
    pinned = have("taskset")
    placement = (
        f"proxy under test on CPU {PROXY_CPU}; wrk, curl, upstream and runner on CPU "
        f"{CLIENT_CPU} (direct: wrk + upstream on CPU {CLIENT_CPU})"
        if pinned
        else "not pinned (no taskset)"
    )
    return [
        ("date", started.strftime("%Y-%m-%d %H:%M:%S UTC")),
        (
            "machine",
            f"{os.cpu_count()} CPUs, {_cpu_model()}, {platform.system()} {platform.release()}",
        ),
        ("python", f"{platform.python_version()} ({PYTHON})"),
        ("aiohttp", aiohttp.__version__),
        ("authproxy loop", f"uvloop {_uvloop(plan.loop)}; naive proxy: default asyncio loop"),
        ("authproxy busy polling", f"upstream.busy_poll_us: {plan.busy_poll_us}"),
        ("upstream", f"{bench.upstream.kind} ({_version(['nginx', '-v'])})"),
        ("load", f"{bench.load.tool} ({_version(['wrk', '--version'])}); curl for streaming"),
        ("placement", placement),
        (
            "plan",
            f"{plan.rounds} round(s); per target and round: {WARMUP_SECONDS:g} s warm-up, "
            f"{plan.duration:g} s at {CONNECTIONS} connections, {plan.sequential_duration:g} s "
            f"at 1 connection, {STREAM_REPEATS}× 100 MB down + 50 MB up (median); far "
            f"upstream: 1 s warm-up, {plan.duration:g} s at {FAR_CONNECTIONS} connections",
        ),
        ("validity", verdict_line),
    ]


NOTES = [
    "Values are median [min–max] over rounds. Ratios and added latency are computed against",
    "direct (authproxy also against naive) within each round, then summarised.",
    "CPU µs/req: utime+stime of the proxy's process tree during the 50-connection run, divided",
    "by the requests it completed. Peak RSS: the proxy's resident set sampled every 5 ms during",
    "the downloads and uploads. authproxy and nginx inject the Authorization header; for direct",
    "and naive the client sends it. Uploads are PUTs; the upstream reads all before it answers.",
    "Streaming ratios can exceed 1: direct runs curl and the upstream on one CPU, while a proxy",
    "adds the second CPU to the pipeline. Compare proxies with each other on those columns.",
]


def write_results(text: str, started: datetime) -> Path:
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    path = results / f"{started.strftime('%Y%m%dT%H%M%SZ')}.md"
    path.write_text(text)
    (results / "latest.md").write_text(text)
    return path


def run_bench(plan: Plan) -> int:
    if have("taskset") and (os.cpu_count() or 1) > 1:
        # This runner samples /proc during streaming: keep it off the proxy's CPU.
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    found = ensure_all()
    started = datetime.now(UTC)
    bench = Bench(plan)
    try:
        bench.start(use_nginx=found["nginx"])
        bench.sanity()
        logins_before = bench.logins()
        rounds, far = bench.rounds()
        logins_after = bench.logins()
    finally:
        bench.close()
    verdict = bench.verdict
    if logins_after != logins_before:
        verdict.fail(f"logins during measurement: {logins_before} -> {logins_after}")
    if verdict.problems:
        verdict_line = (
            f"**INVALID** ({len(verdict.problems)} problems: {'; '.join(verdict.problems[:5])})"
        )
    else:
        verdict_line = (
            f"VALID: {verdict.measured_requests:,} load requests, all 2xx, no socket errors; "
            f"every transfer complete; 0 logins while measuring (authproxy logins/upstream "
            f"logins {logins_before[0]}/{logins_before[1]} before and after)"
        )
    names = [target.name for target in bench.targets]
    far_title = (
        f"Far upstream: answers {FAR_DELAY_MS} ms late (Python upstream), 1 KB GETs over "
        f"{FAR_CONNECTIONS} connections"
    )
    text = markdown(header(bench, started, verdict_line), rounds, names, NOTES, far, far_title)
    path = write_results(text, started)
    print("\n" + text)
    print(f"bench: written to {path} and {path.with_name('latest.md')}")
    if verdict.problems:
        print("bench: RESULT INVALID: see the problems above", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", action="store_true", help="profile authproxy instead")
    parser.add_argument("--far", action="store_true", help="profile against the far upstream")
    args = parser.parse_args()
    plan = plan_from_env()
    if args.profile:
        from profiling import run_profile

        return run_profile(plan.duration, plan.loop, far=args.far)
    return run_bench(plan)


if __name__ == "__main__":
    sys.exit(main())
