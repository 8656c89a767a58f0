"""Load: wrk (or the Python fallback) for 1 KB requests, curl for big downloads and uploads."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import CLIENT_CPU, DOWNLOAD_BYTES, PYTHON, UPLOAD_BYTES, have, pinned, rss_bytes

# wrk's own summary hides the status-error count behind text; this prints it as JSON instead.
# `errors.status` counts answers >= 400, so any 401 from the upstream shows up here.
DONE_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d, "p50": %.1f, "p99": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""

ERROR_KINDS = ("connect", "read", "write", "status", "timeout")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    p50_us: float
    p99_us: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def failures(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class StreamResult:
    ok: bool
    detail: str
    seconds: float
    nbytes: int

    @property
    def mib_per_s(self) -> float:
        return self.nbytes / (1024 * 1024) / self.seconds if self.seconds else 0.0


class LoadGenerator:
    """Runs fixed-duration keep-alive GET loads pinned to the client CPU."""

    def __init__(self, workdir: Path) -> None:
        self.tool = "wrk" if have("wrk") else "python"
        self._script = workdir / "done.lua"
        self._script.write_text(DONE_LUA)

    def run(self, url: str, connections: int, seconds: int, headers: dict[str, str]) -> LoadResult:
        header_args = [f"{name}: {value}" for name, value in headers.items()]
        if self.tool == "wrk":
            argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s"]
            argv += ["-s", str(self._script)]
            for header in header_args:
                argv += ["-H", header]
            argv.append(url)
        else:
            argv = [PYTHON, str(Path(__file__).with_name("py_load.py")), url, str(connections)]
            argv += [str(seconds), *header_args]
        done = subprocess.run(  # noqa: S603 - fixed tools, loopback URLs
            pinned(CLIENT_CPU, argv), capture_output=True, text=True, timeout=seconds + 60
        )
        return parse_bench_line(done.stdout, done.stderr)


def parse_bench_line(stdout: str, stderr: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith("BENCH "):
            data = json.loads(line[len("BENCH ") :])
            return LoadResult(
                requests=int(data["requests"]),
                seconds=data["duration_us"] / 1e6,
                errors={kind: int(data[kind]) for kind in ERROR_KINDS},
                p50_us=float(data["p50"]),
                p99_us=float(data["p99"]),
            )
    raise RuntimeError(f"load generator printed no result: {stdout[-500:]} {stderr[-500:]}")


def download(url: str, headers: dict[str, str]) -> StreamResult:
    out = _curl(url, headers, ["-o", "/dev/null"], "%{http_code} %{size_download} %{time_total}")
    return _stream_result(out, expected_bytes=DOWNLOAD_BYTES, ok_statuses={200})


def upload(url: str, headers: dict[str, str], source: Path) -> StreamResult:
    # PUT with Content-Length; curl reads the file as it sends, so memory stays flat.
    out = _curl(
        url,
        headers,
        ["-T", str(source), "-o", "/dev/null"],
        "%{http_code} %{size_upload} %{time_total}",
    )
    return _stream_result(out, expected_bytes=UPLOAD_BYTES, ok_statuses={200, 201, 204})


def _curl(url: str, headers: dict[str, str], extra: list[str], write_out: str) -> str:
    # `Expect:` off: curl would otherwise pause up to 1 s for a 100 Continue on big uploads.
    argv = ["curl", "-sS", "--max-time", "120", "-H", "Expect:", *extra, "-w", write_out]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    argv.append(url)
    done = subprocess.run(  # noqa: S603 - fixed tool, loopback URL
        pinned(CLIENT_CPU, argv), capture_output=True, text=True, timeout=180
    )
    if done.returncode != 0:
        return f"curl-exit-{done.returncode} 0 0 {done.stderr.strip()}"
    return done.stdout


def _stream_result(out: str, *, expected_bytes: int, ok_statuses: set[int]) -> StreamResult:
    code, size, seconds = [*out.split(), "0", "0", "0"][:3]
    nbytes = int(float(size)) if size.replace(".", "").isdigit() else 0
    ok = code.isdigit() and int(code) in ok_statuses and nbytes == expected_bytes
    detail = f"status {code}, {nbytes} of {expected_bytes} bytes" + ("" if ok else f" ({out})")
    return StreamResult(ok=ok, detail=detail, seconds=float(seconds or 0), nbytes=nbytes)


class RssSampler:
    """Peak resident set of a process tree, sampled every few ms in a thread (VmHWM would also
    count the 1 KB load before, and nginx's master and worker are separate processes)."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    @contextmanager
    def sampling(self) -> Iterator[None]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes(self.pid))
            time.sleep(self.interval)
