"""The request going upstream: its body, and the framing the client writes for it.

Request framing is the client's own work: the head carries exactly one Content-Length (or
Transfer-Encoding: chunked) describing the bytes that follow, whatever framing headers the caller's
headers held, and a streamed body is counted so that never more or fewer bytes than declared go
out (the connection is aborted instead). A proxy that forwards a client's length over a body it
changed smuggles the difference as a request of its own (RFC 9112 §11.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp.streams import StreamReader
from multidict import CIMultiDict

from authproxy.errors import ClientBodyStalled, SendFailed
from authproxy.upstream.connection import UpstreamConnection
from authproxy.upstream.http1 import BODYLESS_METHODS, LAST_CHUNK, chunk_prefix


@dataclass(frozen=True, slots=True)
class StreamedBody:
    """A request body copied from the client as it arrives, never held whole.

    `length` is the size the client declared: exactly that many bytes go out under one
    Content-Length. None means unknown: the body goes out chunked.
    """

    reader: StreamReader
    length: int | None = None
    # Seconds the client may send nothing before the exchange fails (ClientBodyStalled).
    idle_timeout: float | None = None


RequestBody = bytes | StreamedBody | None
# Request headers the client never copies from the caller: it writes its own framing.
FRAMING = frozenset({"content-length", "transfer-encoding"})


def head_fields(
    host_header: str, method: str, headers: CIMultiDict[str], body: RequestBody
) -> Iterable[tuple[str, str]]:
    """Host, the caller's headers less any framing, then framing for what is sent."""
    items: Iterable[tuple[str, str]] = headers.items()
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        items = [(name, value) for name, value in items if name.lower() not in FRAMING]
    fields = [("Host", host_header), *items]
    if body is None:
        if method not in BODYLESS_METHODS:
            fields.append(("Content-Length", "0"))
    elif isinstance(body, bytes):
        fields.append(("Content-Length", str(len(body))))
    elif body.length is not None:
        fields.append(("Content-Length", str(body.length)))
    else:
        fields.append(("Transfer-Encoding", "chunked"))
    return fields


async def send_stream(conn: UpstreamConnection, body: StreamedBody) -> None:
    """Copy the client's body upstream as it arrives, never ahead of what the socket takes.

    A body of declared length that brings more or fewer bytes fails the exchange and aborts
    the connection: the upstream must not read surplus bytes as a request, nor take the next
    request's bytes as the rest of this body.
    """
    transport = conn.transport
    assert transport is not None
    left = body.length
    try:
        while not conn.closed:
            async with asyncio.timeout(body.idle_timeout):
                data = await body.reader.readany()
            if left is None:
                if not data:
                    transport.write(LAST_CHUNK)
                    conn.request_sent()
                    return
                transport.writelines((chunk_prefix(len(data)), data, b"\r\n"))
            elif not data or len(data) > left:
                if not data and not left:
                    conn.request_sent()
                    return
                conn.fail(SendFailed())
                return
            else:
                left -= len(data)
                transport.write(data)
            if conn.writing_paused:
                await conn.drain()
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        conn.fail(ClientBodyStalled())
    except Exception:  # noqa: BLE001 - the client's stream broke; the exchange fails
        conn.fail(SendFailed())
