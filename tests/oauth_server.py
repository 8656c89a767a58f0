"""A real OAuth2 provider for the tests: django-oauth-toolkit in a subprocess on loopback ports.

`tests/oauth_provider/serve.py` serves the token endpoint (`/o/token/`, RFC 6749 §3.2) on one port
and an API that checks Bearer tokens against the provider's database on another, so a route's
upstream and its token URL are different origins, as with a real identity provider. Its request
log tells what reached which server. Without django-oauth-toolkit installed (the `dev` extra) the
tests skip, except under CI (`CI` set), where a missing provider must not pass silently.
"""

from __future__ import annotations

import importlib.util
import json
import os
import selectors
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

SERVE = Path(__file__).resolve().parent / "oauth_provider" / "serve.py"
# Migrating a fresh sqlite database on a busy machine: a safety net, not an expectation.
START_TIMEOUT = 90.0


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    client_secret: str | None


@dataclass(frozen=True, slots=True)
class OAuthProvider:
    state: Path
    token_port: int
    api_port: int
    clients: dict[str, Client]
    username: str
    password: str

    @property
    def token_url(self) -> str:
        return f"http://127.0.0.1:{self.token_port}/o/token/"

    @property
    def revoke_url(self) -> str:
        return f"http://127.0.0.1:{self.token_port}/o/revoke_token/"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api"

    def requests(self) -> list[dict[str, Any]]:
        """Every request the provider answered so far, oldest first (serve.py's log)."""
        log = self.state / "requests.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]


@contextmanager
def running_provider() -> Iterator[OAuthProvider]:
    if importlib.util.find_spec("oauth2_provider") is None:
        reason = "django-oauth-toolkit is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the OAuth2 provider tests")
        pytest.skip(reason)
    with tempfile.TemporaryDirectory(prefix="oauth-provider-") as tmp:
        state = Path(tmp)
        with (state / "stderr.log").open("wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, str(SERVE), tmp],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        try:
            announced = _first_line(process, state)
            yield OAuthProvider(
                state,
                announced["ports"]["token"],
                announced["ports"]["api"],
                {name: Client(**client) for name, client in announced["clients"].items()},
                announced["username"],
                announced["password"],
            )
        finally:
            _end(process)


def _first_line(process: subprocess.Popen[bytes], state: Path) -> dict[str, Any]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        ready = selector.select(START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line:
        _end(process)
        errors = (state / "stderr.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"the OAuth2 provider did not start:\n{errors}")
    announced: dict[str, Any] = json.loads(line)
    return announced


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None and not process.stdin.closed:
        process.stdin.close()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
