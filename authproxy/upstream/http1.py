"""HTTP/1.1 on the wire for the upstream client, the request side: heads and body framing out.

Pure functions over text and bytes (no sockets, no event loop). Header text is encoded as UTF-8
with `surrogateescape`, the way aiohttp's server decoded it: bytes that are not UTF-8 travel
through unchanged. Answers are read by llhttp (upstream/answer.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from authproxy.errors import InvalidRequestHead

# Control characters other than HTAB may not appear in a field (RFC 9110 §5.5); CR and LF in a
# value would split one header into two (request smuggling, header injection).
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Methods a request without a body is sent with no Content-Length for (aiohttp's rule: every
# other method gets `Content-Length: 0`, which some servers need to accept an empty POST).
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


def serialize_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and headers, as one bytes object ready for a single write."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend([f"{name}: {value}" for name, value in headers])
    # Printable text needs no closer look (one C call); tabs and undecodable bytes do.
    if not "".join(lines).isprintable() and any(_CTL.search(line) for line in lines):
        raise InvalidRequestHead()
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


def chunk_prefix(size: int) -> bytes:
    """The size line of one chunk of a chunked request body; the chunk ends with CRLF."""
    return b"%x\r\n" % size


LAST_CHUNK = b"0\r\n\r\n"
