"""`make audit`, part two: send every smuggling probe through a real `authproxy serve`.

Starts a `RecordingUpstream`, writes a config into a temporary directory, starts
`python -m authproxy serve` on 127.0.0.1:0 (its URL read from the "authproxy listening" log line),
and sends each probe raw on its own connection, then a sentinel request on a fresh one. The
upstream must have seen one of the framings the probe allows (or nothing), then the sentinel, and
no stray bytes. Prints a table and exits 1 on any mismatch.

    python -m tools.smuggle_audit [--only NAME ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from yarl import URL

from tools.recording_upstream import RecordingUpstream
from tools.smuggling_probes import PROBES, Framed, Probe

# A safety net for every wait: a probe that hangs fails instead of freezing the audit.
BOUND = 15.0
START_TIMEOUT = 30.0
_STATUS = re.compile(rb"HTTP/1\.[01] (\d{3}) ")


@dataclass(frozen=True, slots=True)
class Outcome:
    probe: Probe
    answers: str  # the statuses the client got, e.g. "200" or "400" or "-" (closed)
    seen: tuple[Framed, ...]
    problems: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.problems and self.probe.accepts(self.seen)


async def exchange(base: URL, wire: bytes) -> bytes:
    """Send `wire` on a new connection and read until the proxy closes it (or BOUND passes)."""
    assert base.host is not None
    assert base.port is not None
    reader, writer = await asyncio.open_connection(base.host, base.port)
    try:
        writer.write(wire)
        await writer.drain()
        received = bytearray()
        with contextlib.suppress(ConnectionError, TimeoutError):
            async with asyncio.timeout(BOUND):
                while data := await reader.read(65536):
                    received += data
        return bytes(received)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def run_probe(base: URL, upstream: RecordingUpstream, probe: Probe, index: int) -> Outcome:
    """Send one probe, then a sentinel that must arrive as sent after whatever the probe caused."""
    upstream.clear()
    answer = await exchange(base, probe.wire)
    sentinel = f"/sentinel/{index}"
    wire = f"GET /plain{sentinel} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\n\r\n"
    await exchange(base, wire.encode())
    seen = [(r.method, r.target, r.body) for r in upstream.requests]
    problems = list(upstream.problems)
    if seen[-1:] != [("GET", sentinel, b"")]:
        problems.append("the sentinel request did not arrive last and intact")
    else:
        seen.pop()
    if upstream.leftovers:
        problems.append("bytes of an unfinished request wait on a pooled upstream connection")
    statuses = ",".join(code.decode() for code in _STATUS.findall(answer)) or "-"
    return Outcome(probe, statuses, tuple(seen), tuple(problems))


def config_for(upstream: URL) -> dict[str, object]:
    auth = {"credentials": {"key": "audit-key-1"}, "inject": {"headers": {"X-Key": "{key}"}}}
    return {
        "listen": "127.0.0.1:0",
        "token_store": "memory",
        # Stalled probes are cut off quickly; these are the timeouts that do it.
        "limits": {"header_timeout": 1.0, "body_timeout": 1.0},
        # The probes name the proxy `proxy.test` (without clients, other names are refused).
        "allowed_hosts": ["proxy.test"],
        "routes": {
            "plain": {"upstream": str(upstream)},
            "auth": {"upstream": str(upstream), "auth": auth},
        },
    }


@contextlib.asynccontextmanager
async def served_proxy(upstream: URL, directory: Path) -> AsyncIterator[URL]:
    """`python -m authproxy serve` as a subprocess, its log in `directory`; yields its URL."""
    config = directory / "authproxy.yaml"
    config.write_text(json.dumps(config_for(upstream)))  # JSON is YAML
    log_path = directory / "authproxy.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "authproxy",
            "serve",
            "--config",
            str(config),
            "--log-format",
            "json",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        yield await _listening_url(process, log_path)
    finally:
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), START_TIMEOUT)


async def _listening_url(process: asyncio.subprocess.Process, log_path: Path) -> URL:
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            text = await asyncio.to_thread(log_path.read_text, errors="replace")
            for line in text.splitlines():
                with contextlib.suppress(ValueError):
                    event = json.loads(line)
                    if event.get("event") == "authproxy listening":
                        return URL(event["url"])
            if process.returncode is not None:
                raise RuntimeError("authproxy exited before listening:\n" + text)
            await asyncio.sleep(0.05)


def table(outcomes: Sequence[Outcome]) -> str:
    width = max(len(outcome.probe.name) for outcome in outcomes)
    lines = [f"{'probe':<{width}}  {'client got':<10}  {'upstream saw':<26}  verdict"]
    for outcome in outcomes:
        seen = (
            "nothing"
            if not outcome.seen
            else "; ".join(
                f"{method} {target} ({len(body)} B)" for method, target, body in outcome.seen
            )
        )
        why = "; ".join(outcome.problems) or "framed differently from what the client sent"
        verdict = "ok" if outcome.passed else f"MISMATCH: {why}"
        lines.append(f"{outcome.probe.name:<{width}}  {outcome.answers:<10}  {seen:<26}  {verdict}")
    return "\n".join(lines)


async def audit(only: Sequence[str]) -> int:
    probes = [probe for probe in PROBES if not only or probe.name in only]
    async with RecordingUpstream() as upstream:
        with tempfile.TemporaryDirectory(prefix="authproxy-audit-") as directory:
            async with served_proxy(upstream.url, Path(directory)) as base:
                outcomes = [
                    await run_probe(base, upstream, probe, index)
                    for index, probe in enumerate(probes)
                ]
    print(table(outcomes))
    failed = [outcome for outcome in outcomes if not outcome.passed]
    print(f"\n{len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", nargs="*", default=(), metavar="NAME", help="probes to run")
    args = parser.parse_args(argv)
    return asyncio.run(audit(args.only))


if __name__ == "__main__":
    sys.exit(main())
