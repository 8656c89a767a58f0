"""Fallback load generator when wrk cannot be installed: keep-alive GETs over N connections.

Prints one `BENCH {json}` line with the same fields as wrk's `done` script (see load.py), so the
runner reads either the same way. It is far slower than wrk; results say which one was used.
Usage: `python bench/py_load.py URL CONNECTIONS SECONDS [HEADER: VALUE ...]`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class Tally:
    latencies_us: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(
        default_factory=lambda: {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    )
    bytes: int = 0


async def connection(host: str, port: int, request: bytes, deadline: float, tally: Tally) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        tally.errors["connect"] += 1
        return
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            tally.latencies_us.append((time.perf_counter() - started) * 1e6)
            tally.bytes += len(head) + len(body)
            if int(head.split(b" ", 2)[1]) >= 400:
                tally.errors["status"] += 1
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        tally.errors["read"] += 1
    finally:
        writer.close()


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def run(url: str, connections: int, seconds: float, headers: list[str]) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lines = [f"GET {parts.path or '/'} HTTP/1.1", f"Host: {host}:{port}", *headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    tally = Tally()
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(connection(host, port, request, deadline, tally) for _ in range(connections))
    )
    elapsed = time.monotonic() - started
    return {
        "requests": len(tally.latencies_us),
        "duration_us": int(elapsed * 1e6),
        "bytes": tally.bytes,
        **tally.errors,
        "p50": percentile(tally.latencies_us, 0.50),
        "p99": percentile(tally.latencies_us, 0.99),
    }


def main() -> None:
    url, connections, seconds, *headers = sys.argv[1:]
    factory = None
    try:
        import uvloop

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run(url, int(connections), float(seconds), headers))
    print("BENCH " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
