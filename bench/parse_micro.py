"""Per-answer cost of reading an upstream answer: `python bench/parse_micro.py`.

Feeds whole answers (10 headers, a 1 KiB body, Content-Length or chunked) to a real
`UpstreamConnection` through `data_received`, exactly as the event loop does, with a transport
that only counts calls: what is measured is the framing code of the hot path (head, headers,
body, completion), not sockets. Prints the best of several repeats, in µs per answer, and the
raw floor of `httptools` alone (callbacks that do nothing) for comparison.
"""

from __future__ import annotations

import asyncio
import os
import timeit
from collections.abc import Callable

from authproxy.upstream.connection import UpstreamConnection

BODY = b"x" * 1024
HEADERS = b"".join(
    [
        b"Server: nginx/1.24.0\r\n",
        b"Date: Tue, 01 Apr 2025 10:00:00 GMT\r\n",
        b"Content-Type: application/json\r\n",
        b"Connection: keep-alive\r\n",
        b"Cache-Control: no-store\r\n",
        b"X-Request-Id: 5b1d0c1e-8f4b-4f55-9d36-0d6a2f1c1234\r\n",
        b"Vary: Accept-Encoding\r\n",
        b"Strict-Transport-Security: max-age=31536000\r\n",
        b"X-Content-Type-Options: nosniff\r\n",
    ]
)
SIZED = b"HTTP/1.1 200 OK\r\n" + HEADERS + b"Content-Length: 1024\r\n\r\n" + BODY
CHUNKED = (
    b"HTTP/1.1 200 OK\r\n"
    + HEADERS
    + b"Transfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"100\r\n" + BODY[i : i + 256] + b"\r\n" for i in range(0, 1024, 256))
    + b"0\r\n\r\n"
)
# Many short repeats, best kept: on a shared machine the minimum is the run nobody disturbed.
NUMBER = int(os.environ.get("PARSE_NUMBER", "2000"))
REPEAT = int(os.environ.get("PARSE_REPEAT", "101"))


class CountingTransport:
    """Enough of an asyncio transport for a connection that is only ever fed bytes."""

    def __init__(self) -> None:
        self.calls = 0

    def get_extra_info(self, _name: str) -> None:
        return None

    def pause_reading(self) -> None:
        self.calls += 1

    def resume_reading(self) -> None:
        self.calls += 1

    def abort(self) -> None:
        raise RuntimeError("the benchmark answer was refused")

    def close(self) -> None:
        self.abort()


def one_answer(conn: UpstreamConnection, answer: bytes) -> Callable[[], None]:
    def run() -> None:
        conn.begin("GET", 60.0)
        conn.data_received(answer)
        assert conn.complete
        assert len(conn.take_all()) == 1024
        assert conn.reusable
        conn.finish_exchange()

    return run


def best_us(run: Callable[[], None]) -> float:
    return min(timeit.repeat(run, number=NUMBER, repeat=REPEAT)) / NUMBER * 1e6


def httptools_floor(answer: bytes) -> Callable[[], None] | None:
    try:
        import httptools  # absent before the switch to llhttp
    except ImportError:
        return None

    class Nothing:
        def on_header(self, _name: bytes, _value: bytes) -> None:
            pass

        def on_body(self, _body: bytes) -> None:
            pass

    sink = Nothing()

    def run() -> None:
        httptools.HttpResponseParser(sink).feed_data(answer)

    return run


def main() -> None:
    loop = asyncio.new_event_loop()
    conn = UpstreamConnection(loop)
    conn.connection_made(CountingTransport())  # type: ignore[arg-type]
    print(f"per answer, 10 headers, 1 KiB body (best of {REPEAT} × {NUMBER}):")
    for name, answer in (("Content-Length", SIZED), ("chunked", CHUNKED)):
        line = f"  {name:<15} UpstreamConnection {best_us(one_answer(conn, answer)):5.2f} µs"
        floor = httptools_floor(answer)
        if floor is not None:
            line += f"   httptools alone {best_us(floor):5.2f} µs"
        print(line)
    loop.close()


if __name__ == "__main__":
    main()
