"""A real, throwaway `redis-server` on a free loopback port: no persistence, stopped afterwards.

Tests talk to a real server because what they prove (Lua scripts, `SET NX PX` leases, a restart
dropping connections) is exactly what a fake would get wrong. Without `redis-server` installed the
tests skip, except under CI (`CI` set), where a missing server must not pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

START_TIMEOUT = 10.0
NO_PERSISTENCE = ("--save", "", "--appendonly", "no", "--loglevel", "warning")


class RedisServer:
    """One `redis-server` process; `stop()` and `start()` again keep the same port (a restart)."""

    def __init__(self, executable: str, *extra: str) -> None:
        self.executable = executable
        self.extra = extra
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        # A port picked free can be taken before redis binds it; a new one is tried then.
        for _ in range(5):
            port = self.port or _free_port()
            options = ["--port", str(port), "--bind", "127.0.0.1", *NO_PERSISTENCE, *self.extra]
            process = subprocess.Popen(
                [self.executable, *options], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if _wait_for_ping(process, port):
                self._process, self.port = process, port
                return
            _end(process)
        raise RuntimeError(f"redis-server did not answer PING on 127.0.0.1:{port}")

    def stop(self) -> None:
        if self._process is not None:
            _end(self._process)
            self._process = None


@contextmanager
def running_redis(*extra: str) -> Iterator[RedisServer]:
    """Start a server (`extra`: more options), yield it, stop it; skip without `redis-server`."""
    executable = shutil.which("redis-server")
    if executable is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis store tests")
        pytest.skip(reason)
    server = RedisServer(executable, *extra)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_for_ping(process: subprocess.Popen[bytes], port: int) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as conn:
                conn.sendall(b"PING\r\n")
                # NOAUTH is an answer too: the server is up and wants the password it was given.
                if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                    return True
        except OSError:
            pass
        time.sleep(0.02)
    return False


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
