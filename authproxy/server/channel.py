"""Messages between the supervisor of `serve --workers N` and one worker, on their socketpair.

Each message is a JSON object in a frame: a 4-byte big-endian length, then the UTF-8 JSON. The
socket is non-blocking and watched by the event loop (`add_reader`), in the supervisor and in the
worker alike; what cannot be sent at once waits in a buffer until the socket is writable again.
End-of-file means the other side is gone: a worker then stops, and the supervisor reaps it.

Messages (`t` is the type):
    supervisor -> worker  hello {listen_fd, rates_fd}     first, before the worker serves
    worker -> supervisor  ready                           the worker listens
    worker -> supervisor  gather {id}                     a scrape: every worker's counts, please
    supervisor -> worker  report {id}                     your counts, please
    worker -> supervisor  report {id, counts}             mine
    supervisor -> worker  gathered {id, counts}           everyone's, summed
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from collections.abc import Callable
from typing import Any

Message = dict[str, Any]

_HEADER = struct.Struct("!I")
# A frame this large is no message of ours: the peer is broken, and the channel is closed.
MAX_FRAME = 16 * 1024 * 1024


class Channel:
    """One end of the socketpair: `send` a message; `on_message` for each one received, and
    `on_close` once, when the other side is gone (or `close` was called)."""

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[Message], None],
        on_close: Callable[[], None],
    ) -> None:
        self._sock = sock
        self._on_message = on_message
        self._on_close = on_close
        self._loop = asyncio.get_running_loop()
        self._received = bytearray()
        self._unsent = bytearray()
        self.closed = False
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def send(self, message: Message) -> None:
        """Queue `message`; a channel already closed drops it (the peer is gone)."""
        if self.closed:
            return
        data = json.dumps(message, separators=(",", ":")).encode()
        frame = _HEADER.pack(len(data)) + data
        if self._unsent:
            self._unsent += frame
            return
        try:
            sent = self._sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the reader sees the end-of-file and closes
        if sent < len(frame):
            self._unsent += frame[sent:]
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        fd = self._sock.fileno()
        if fd != -1:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
        self._sock.close()
        self._on_close()

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._unsent)
        except BlockingIOError:
            return
        except OSError:
            self._unsent.clear()
            sent = 0
        del self._unsent[:sent]
        if not self._unsent and not self.closed:
            self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        try:
            data = self._sock.recv(256 * 1024)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self._received += data
        while len(self._received) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(self._received)
            if length > MAX_FRAME:
                self.close()
                return
            end = _HEADER.size + length
            if len(self._received) < end:
                return
            raw = bytes(self._received[_HEADER.size : end])
            del self._received[:end]
            with contextlib.suppress(ValueError):
                message = json.loads(raw)
                if isinstance(message, dict):
                    self._on_message(message)
            if self.closed:
                return


def read_first(sock: socket.socket, timeout: float) -> Message | None:
    """The first message on a blocking socket, before the event loop watches it (the hello);
    None if the peer closed or sent something else. Raises TimeoutError after `timeout`."""
    sock.settimeout(timeout)
    try:
        head = _read_exactly(sock, _HEADER.size)
        if head is None:
            return None
        (length,) = _HEADER.unpack(head)
        if length > MAX_FRAME:
            return None
        raw = _read_exactly(sock, length)
    finally:
        sock.settimeout(None)
    try:
        message = json.loads(raw) if raw is not None else None
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


def frame(message: Message) -> bytes:
    """`message` as one frame, for writing before a channel exists (the hello)."""
    data = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(data)) + data


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
