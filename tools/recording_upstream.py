"""A raw HTTP/1.1 upstream that records every byte it receives and the requests it frames from them.

Smuggling shows on the upstream's side of a proxy: one request the client framed arrives as two,
or with a body other than the one the client sent. This server parses what it receives strictly
by RFC 9112 (CRLF line ends, one Content-Length, Transfer-Encoding chunked only, no obs-fold), so
anything a lenient server might read as an extra request shows here as an extra request or as a
`problem`, and answers each request with a small 200 on the same keep-alive connection.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from yarl import URL

MAX_HEAD = 64 * 1024
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/1\.[01]")
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([^\x00-\x08\x0a-\x1f\x7f]*?)[ \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,16})(?:;[^\r\n]*)?")
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


class Unframeable(Exception):
    """The bytes are not a request RFC 9112 frames one way only; the message says why."""


@dataclass(frozen=True, slots=True)
class Received:
    """One request as framed by this server: `body` is the payload, chunked framing undone."""

    connection: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    framing: str  # "length", "chunked" or "none"

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key.lower() == name.lower()]


Answer = Callable[[Received], bytes]


def parse_request(buffer: bytes, connection: int = 0) -> tuple[Received, int] | None:
    """The first request in `buffer` and the bytes it took, or None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_HEAD:
            raise Unframeable("a request head larger than 64 KiB")
        if b"\n" in buffer.replace(b"\r\n", b"") or b"\r" in buffer.replace(b"\r\n", b"")[:-1]:
            raise Unframeable("a bare CR or LF in a request head")
        return None
    head = buffer[:end]
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise Unframeable("a bare CR or LF in a request head")
    line, *lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise Unframeable("a malformed request line")
    headers: list[tuple[str, str]] = []
    for raw in lines:
        found = _FIELD.fullmatch(raw)
        if found is None:
            raise Unframeable("a malformed header line (obs-fold, control byte or no colon)")
        headers.append((found[1].decode(), found[2].decode("latin-1")))
    start = end + 4
    lengths = [value for name, value in headers if name.lower() == "content-length"]
    codings = [value for name, value in headers if name.lower() == "transfer-encoding"]
    method, target = match[1].decode(), match[2].decode("latin-1")
    if codings:
        if lengths:
            raise Unframeable("both Transfer-Encoding and Content-Length")
        if [value.strip().lower() for value in codings] != ["chunked"]:
            raise Unframeable("a Transfer-Encoding other than one 'chunked'")
        decoded = _dechunk(buffer, start)
        if decoded is None:
            return None
        body, used = decoded
        return Received(connection, method, target, tuple(headers), body, "chunked"), used
    if lengths:
        if len(lengths) != 1 or not lengths[0].isdigit() or not lengths[0].isascii():
            raise Unframeable("a Content-Length that is not exactly one decimal number")
        size = int(lengths[0])
        if len(buffer) < start + size:
            return None
        body = buffer[start : start + size]
        return Received(connection, method, target, tuple(headers), body, "length"), start + size
    return Received(connection, method, target, tuple(headers), b"", "none"), start


def _dechunk(buffer: bytes, pos: int) -> tuple[bytes, int] | None:
    body = bytearray()
    while True:
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_line = _CHUNK_SIZE.fullmatch(buffer[pos:eol])
        if size_line is None:
            raise Unframeable("a malformed chunk-size line")
        size = int(size_line[1], 16)
        pos = eol + 2
        if size == 0:
            break
        if len(buffer) < pos + size + 2:
            return None
        if buffer[pos + size : pos + size + 2] != b"\r\n":
            raise Unframeable("chunk data longer than its size")
        body += buffer[pos : pos + size]
        pos += size + 2
    while True:  # trailer fields, up to the empty line
        eol = buffer.find(b"\r\n", pos)
        if eol < 0:
            return None
        line, pos = buffer[pos:eol], eol + 2
        if not line:
            return bytes(body), pos
        if _FIELD.fullmatch(line) is None:
            raise Unframeable("a malformed trailer line")


def ok(_request: Received) -> bytes:
    return OK


@dataclass
class _Connection(asyncio.Protocol):
    server: RecordingUpstream
    number: int
    transport: asyncio.Transport | None = None
    buffer: bytes = b""
    raw: bytearray = field(default_factory=bytearray)
    open: bool = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.connections.append(self)

    def data_received(self, data: bytes) -> None:
        self.raw += data
        self.buffer += data
        assert self.transport is not None
        while self.buffer:
            try:
                parsed = parse_request(self.buffer, self.number)
            except Unframeable as error:
                self.server.problems.append(f"connection {self.number}: {error}")
                self.transport.close()
                return
            if parsed is None:
                return
            request, used = parsed
            self.buffer = self.buffer[used:]
            self.server.requests.append(request)
            self.transport.write(self.server.answer(request))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False


class RecordingUpstream:
    """An asyncio server on 127.0.0.1:0; `requests`, `problems` and each connection's raw bytes."""

    def __init__(self, answer: Answer = ok) -> None:
        self.answer = answer
        self.requests: list[Received] = []
        self.problems: list[str] = []
        self.connections: list[_Connection] = []
        self._server: asyncio.Server | None = None
        self.url = URL()

    @property
    def leftovers(self) -> list[bytes]:
        """Bytes of an unfinished request waiting on a connection that is still open."""
        return [conn.buffer for conn in self.connections if conn.open and conn.buffer]

    def raw(self) -> bytes:
        """Every byte received, connection after connection."""
        return b"".join(bytes(conn.raw) for conn in self.connections)

    def clear(self) -> None:
        self.requests.clear()
        self.problems.clear()
        for conn in self.connections:
            conn.raw.clear()

    async def start(self) -> URL:
        loop = asyncio.get_running_loop()
        counter = iter(range(1, 1 << 30))
        self._server = await loop.create_server(
            lambda: _Connection(self, next(counter)), "127.0.0.1", 0
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = URL.build(scheme="http", host="127.0.0.1", port=port)
        return self.url

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in self.connections:
                if conn.transport is not None:
                    conn.transport.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> RecordingUpstream:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()
