"""A real, throwaway `tinyproxy` (a forward proxy) on a free loopback port, with its own config file
and log file, stopped afterwards.

Its log is the evidence: tinyproxy writes one `Request` line for each request it is given, the
request line as received (`GET http://127.0.0.1:PORT/path HTTP/1.1`, `CONNECT 127.0.0.1:PORT
HTTP/1.1`), so a test can prove what went through the proxy and what went around it. Without
`tinyproxy` installed the tests skip, except under CI (`CI` set), where they must run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Generous: a safety net on a busy machine, never a measurement.
START_TIMEOUT = 30.0
_REQUEST = re.compile(r"Request \(file descriptor \d+\): (.+)$")


class TinyProxy:
    """One `tinyproxy -d` process; `requests()` reads the request lines it has logged."""

    def __init__(self, executable: str, directory: Path, settings: tuple[str, ...]) -> None:
        self.executable = executable
        self.directory = directory
        self.settings = settings
        self.port = 0
        self.log = directory / "tinyproxy.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, credentials: str = "") -> str:
        """`http://[credentials@]127.0.0.1:PORT`."""
        return f"http://{credentials + '@' if credentials else ''}{self.address}"

    def requests(self) -> list[str]:
        """The request lines tinyproxy was sent, in order (`GET http://... HTTP/1.1`)."""
        if not self.log.exists():
            return []
        lines = self.log.read_text(errors="replace").splitlines()
        return [match[1] for line in lines if (match := _REQUEST.search(line))]

    def start(self) -> None:
        # A port picked free can be taken before tinyproxy binds it; a new one is tried then.
        for _ in range(5):
            port = _free_port()
            config = self.directory / "tinyproxy.conf"
            self.log.unlink(missing_ok=True)
            config.write_text(self._config(port))
            process = subprocess.Popen(
                [self.executable, "-d", "-c", str(config)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if _wait_for_port(process, port, self.log):
                self._process, self.port = process, port
                return
            _end(process)
        raise RuntimeError("tinyproxy did not start listening on 127.0.0.1")

    def _config(self, port: int) -> str:
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log}"',
            "LogLevel Info",  # the most detailed level: every request line
            f'PidFile "{self.directory / "tinyproxy.pid"}"',
            "MaxClients 50",
            "Allow 127.0.0.1",
            *self.settings,
        ]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self._process is not None:
            _end(self._process)
            self._process = None


@contextmanager
def running_tinyproxy(directory: Path, *settings: str) -> Iterator[TinyProxy]:
    """Start tinyproxy with `settings` (config lines such as `BasicAuth user pass`) added to its
    config, yield it, stop it; skip without `tinyproxy`."""
    executable = shutil.which("tinyproxy")
    if executable is None:
        reason = "tinyproxy is not installed (apt-get install tinyproxy)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the outbound proxy tests")
        pytest.skip(reason)
    directory.mkdir(parents=True, exist_ok=True)
    proxy = TinyProxy(executable, directory, settings)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()


def free_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    return _free_port()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_port(process: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    """Whether tinyproxy accepts connections on `port`: it says so in its log once it does (the
    port itself takes connections into its backlog a moment before)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # exited: the port was taken, or the config refused
        if log.exists() and "Accepting connections" in log.read_text(errors="replace"):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1.0):
                return True
        time.sleep(0.05)
    return False


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
