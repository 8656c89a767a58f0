"""`bench/run.py --profile`: where authproxy spends its CPU on the 1 KB hot path.

Starts the same upstream and authproxy as the benchmark (same placement), puts a fixed
50-connection 1 KB load on it for BENCH_DURATION seconds (`--far`: the far upstream, answering
5 ms late, and 10 connections, as in the benchmark's far table) and samples it with py-spy
(installed into the venv with pip if missing), else runs authproxy under cProfile. Prints the top
functions by own time and by inclusive time, and keeps the raw profile under bench/results/.
"""

from __future__ import annotations

import os
import pstats
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from common import BENCH_DIR, CLIENT_CPU, PYTHON, bench_token, have, pinned, scratch_dir, stop_all
from installs import ensure_all
from load import LoadGenerator
from servers import Target, Upstream, start_authproxy, start_far_upstream, start_upstream

CONNECTIONS = 50
FAR_CONNECTIONS = 10
FAR_DELAY_MS = 5
TOP = 15


def py_spy() -> str | None:
    """py-spy from the venv (pip-installed on first use), or None when pip cannot get it."""
    local = Path(PYTHON).with_name("py-spy")
    if not local.exists() and not have("py-spy"):
        print("profile: installing py-spy into the venv")
        subprocess.run(  # noqa: S603 - the venv's own pip
            [PYTHON, "-m", "pip", "install", "--quiet", "py-spy"], check=False
        )
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def load(target: Target, seconds: int, workdir: Path, connections: int = CONNECTIONS) -> None:
    generator = LoadGenerator(workdir)
    result = generator.run(f"{target.base_url}/1k", connections, seconds, {})
    print(
        f"profile: load {result.requests:,} requests, {result.rps:,.0f} req/s, errors "
        f"{result.errors} ({generator.tool}; rates are lower than in the benchmark: sampling)"
    )


@dataclass
class Tops:
    own: Counter[str] = field(default_factory=Counter)  # per function
    inclusive: Counter[str] = field(default_factory=Counter)  # per function
    own_lines: Counter[str] = field(default_factory=Counter)  # per source line
    total: int = 0


def function_of(frame: str) -> str:
    """`f (file.py:12)` -> `f (file.py)`: py-spy names the sampled line; sum lines per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rpartition(':')[0] or where.rstrip(')')})"


def collapsed_tops(raw: Path) -> Tops:
    """Own and inclusive sample counts from py-spy's collapsed-stack (`raw`) output."""
    tops = Tops()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")[1:]  # the first entry names the process/thread, not code
        if not frames:
            continue
        tops.total += count
        tops.own_lines[frames[-1]] += count
        tops.own[function_of(frames[-1])] += count
        for function in {function_of(frame) for frame in frames}:
            tops.inclusive[function] += count
    return tops


def _short(frame: str) -> str:
    """`handle (authproxy/server.py)` instead of a site-packages path."""
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in frame:
            name, _, rest = frame.partition(" (")
            return f"{name} ({rest.rpartition(marker)[2]}"
    return frame


def _print_top(title: str, rows: list[tuple[str, int]], total: int) -> None:
    print(f"\ntop {TOP} {title}:")
    for frame, count in rows[:TOP]:
        print(f"  {100 * count / total:5.1f}%  {_short(frame)}")


def print_tops(tops: Tops) -> None:
    total = tops.total
    print(f"\nprofile: {total} samples of authproxy's busy threads")
    _print_top("functions by own time", tops.own.most_common(), total)
    _print_top("source lines by own time", tops.own_lines.most_common(), total)
    ours = [(f, c) for f, c in tops.inclusive.most_common() if "authproxy/" in f]
    _print_top("authproxy functions by inclusive time", ours, total)
    _print_top("functions by inclusive time (all code)", tops.inclusive.most_common(), total)


def with_py_spy(
    tool: str, upstream: Upstream, work: Path, seconds: int, loop: str, connections: int
) -> Path:
    target = start_authproxy(upstream, work, loop)
    assert target.proc is not None
    try:
        load(target, 2, work, connections)  # warm-up: connections open, pools filled, caches hot
        raw = work / "py-spy.txt"
        argv = [tool, "record", "--pid", str(target.proc.pid), "--duration", str(seconds)]
        argv += ["--rate", "200", "--format", "raw", "--output", str(raw)]
        spy = subprocess.Popen(  # noqa: S603 - the venv's py-spy on our own child
            pinned(CLIENT_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(0.5)  # let py-spy attach before the load starts
        load(target, seconds + 1, work, connections)
        _, err = spy.communicate(timeout=seconds + 60)
        if spy.returncode != 0 or not raw.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace').strip()}")
        return raw
    finally:
        target.proc.stop()


def with_cprofile(
    upstream: Upstream, work: Path, seconds: int, loop: str, connections: int
) -> Path:
    out = work / "authproxy.pstats"
    target = start_authproxy(upstream, work, loop, launcher=["-m", "cProfile", "-o", str(out)])
    assert target.proc is not None
    try:
        load(target, seconds, work, connections)
    finally:
        target.proc.stop()  # SIGTERM: authproxy shuts down cleanly and cProfile writes `out`
    return out


def print_pstats(path: Path) -> None:
    stats = pstats.Stats(str(path))
    for order in ("tottime", "cumulative"):
        print(f"\ntop {TOP} by {order}:")
        stats.sort_stats(order).print_stats(TOP)


def keep(path: Path) -> Path:
    results = BENCH_DIR / "results"
    results.mkdir(exist_ok=True)
    kept = results / f"profile-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}{path.suffix}"
    shutil.copyfile(path, kept)
    return kept


def run_profile(seconds: int, loop: str, far: bool = False) -> int:
    if have("taskset") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})
    found = ensure_all()
    work = scratch_dir("profile")
    connections = FAR_CONNECTIONS if far else CONNECTIONS
    if far:
        upstream = start_far_upstream(bench_token(), FAR_DELAY_MS)
    else:
        upstream = start_upstream(bench_token(), found["nginx"], work / "upload.bin")
    try:
        tool = py_spy()
        if tool is not None:
            print(f"profile: py-spy sampling authproxy for {seconds:g} s under load")
            raw = with_py_spy(tool, upstream, work, seconds, loop, connections)
            print_tops(collapsed_tops(raw))
        else:
            print(f"profile: py-spy unavailable; cProfile for {seconds:g} s under load")
            raw = with_cprofile(upstream, work, seconds, loop, connections)
            print_pstats(raw)
        print(f"\nprofile: raw profile kept at {keep(raw)}")
    finally:
        stop_all()
        shutil.rmtree(work, ignore_errors=True)
    return 0
