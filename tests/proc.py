"""Run `authproxy` as a real subprocess and find where it listens from its JSON start-up log."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

START_TIMEOUT = 30.0


@dataclass
class ProxyProcess:
    process: asyncio.subprocess.Process
    url: str
    output: list[str] = field(default_factory=list)

    async def stop(self, signum: int = signal.SIGTERM) -> int:
        """Signal the process, wait for it, and return its exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
        await self.drain()
        return code

    async def wait(self) -> int:
        """Wait for the process to exit on its own (after a signal the test sent itself)."""
        code = await asyncio.wait_for(self.process.wait(), START_TIMEOUT)
        await self.drain()
        return code

    async def drain(self) -> None:
        assert self.process.stdout is not None
        rest = await self.process.stdout.read()
        self.output.extend(rest.decode(errors="replace").splitlines())

    @property
    def text(self) -> str:
        return "\n".join(self.output)


async def start_proxy(
    *args: str, env: Mapping[str, str] | None = None, python: str = sys.executable
) -> ProxyProcess:
    """Start `python -m authproxy ARGS` and wait for its "authproxy listening" log line."""
    process = await asyncio.create_subprocess_exec(
        python,
        "-m",
        "authproxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    lines: list[str] = []

    async def wait_for_url() -> str:
        assert process.stdout is not None
        while True:
            raw = await process.stdout.readline()
            if not raw:
                raise AssertionError("authproxy exited before listening:\n" + "\n".join(lines))
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "authproxy listening":
                return str(event["url"])

    try:
        url = await asyncio.wait_for(wait_for_url(), START_TIMEOUT)
    except BaseException:
        if process.returncode is None:
            process.kill()
            await process.wait()
        raise
    return ProxyProcess(process, url, lines)


async def run_cli(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """Run `python -m authproxy ARGS` to completion: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "authproxy",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(process.communicate(), START_TIMEOUT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
