"""Shared plumbing for the benchmark: processes, CPU placement, /proc readings, the test token."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jwt

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
PYTHON = sys.executable

# The proxy under test gets a core to itself; load generator, upstream and clients share the other.
PROXY_CPU = "0"
CLIENT_CPU = "1"

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024

KIB = 1024
MIB = 1024 * 1024
DOWNLOAD_BYTES = 100 * MIB
UPLOAD_BYTES = 50 * MIB
SMALL_BYTES = 1024


def bench_token() -> str:
    """A JWT that expires in 2100: authproxy reads `exp` (unverified) and never renews it."""
    return jwt.encode(
        {"sub": "bench", "exp": 4102444800},
        "authproxy-bench-signing-key-32-bytes!",
        algorithm="HS256",
    )


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """`argv` under `taskset -c cpu` when there is taskset (it execs: the pid stays the tool's)."""
    if have("taskset"):
        return ["taskset", "-c", cpu, *argv]
    return list(argv)


def scratch_dir(name: str) -> Path:
    """A temp dir on tmpfs when there is one, so big files and uploads never wait for a disk."""
    shm = "/dev/shm"  # noqa: S108 - mkdtemp makes a private 0700 dir inside it
    base = shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=f"authproxy-{name}-", dir=base))


def free_port() -> int:
    """A port that was free a moment ago (for nginx, which cannot report a port-0 choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A one-off GET for checks (not for measuring); never follows redirects off loopback."""
    assert url.startswith("http://127.0.0.1:"), url
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback only
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_json(url: str) -> dict[str, object]:
    status, body = http_get(url)
    if status != 200:
        raise RuntimeError(f"GET {url} answered {status}")
    document: dict[str, object] = json.loads(body)
    return document


@dataclass
class Proc:
    """A process the benchmark started: only these are ever signalled, by their own pid."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path | None = None
    cleanup_dirs: list[Path] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, grace: float = 10.0) -> None:
        if self.alive():
            self.popen.send_signal(sig)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for path in self.cleanup_dirs:
            shutil.rmtree(path, ignore_errors=True)


# Every process this run started, so a failure half-way through still stops all of them.
STARTED: list[Proc] = []


def start(name: str, argv: Sequence[str], log: Path, *, cwd: Path = REPO) -> Proc:
    """Start `argv` with stdout+stderr to `log`; `stop_all` will stop it."""
    with log.open("wb") as handle:
        popen = subprocess.Popen(  # noqa: S603 - argv is built by this package
            list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )
    proc = Proc(name, popen, log)
    STARTED.append(proc)
    return proc


def stop_all() -> None:
    """Stop what this run started, newest first, each by its own pid."""
    while STARTED:
        STARTED.pop().stop()


def read_json_line(log: Path, event: str, proc: Proc, timeout: float = 20.0) -> dict[str, object]:
    """The first JSON line in `log` with this `event`: how authproxy and naive tell their URL."""
    found: dict[str, object] = {}

    def scan() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited early; see {log}")
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    found.update(record)
                    return True
        return False

    wait_for(scan, f"{proc.name} to log {event!r}", timeout)
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx: master + worker), read from /proc."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            text = Path(f"/proc/{current}/task/{current}/children").read_text()
            queue.extend(int(child) for child in text.split())
    return pids


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid` and its descendants, in seconds."""
    ticks = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{each}/stat").read_text()
            # Fields after the command (which may hold spaces) start after the last ')'.
            fields = stat.rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Current resident set of `pid` and its descendants."""
    total = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            resident_pages = int(Path(f"/proc/{each}/statm").read_text().split()[1])
            total += resident_pages * PAGE_KIB * KIB
    return total
