"""HTTP/1.1 on the wire for the upstream client: request heads out, response heads and bodies in.

Pure functions and small state machines over bytes (no sockets, no event loop), so every framing
rule is tested directly. Header text is decoded and encoded as UTF-8 with `surrogateescape`, like
aiohttp's own parser: bytes that are not UTF-8 travel through unchanged.

Response bodies are framed as RFC 9112 §6.3 says: no body for HEAD, 1xx, 204 and 304; chunked
when Transfer-Encoding ends in chunked; Content-Length when given; otherwise up to the close.
An answer whose framing is doubtful (Transfer-Encoding with Content-Length, Transfer-Encoding in
HTTP/1.0, repeated lengths, a folded framing header, bare LF line ends) is read, but its
connection is never used again: a server and a proxy that disagree on where an answer ends are
how responses get desynchronised (RFC 9112 §11.2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableSequence
from dataclasses import dataclass, field

from authproxy.http_syntax import is_token

# A head larger than this is not an answer we want to parse (aiohttp's server allows 8 KiB
# per line; a whole head of 64 KiB is generous).
MAX_HEAD = 64 * 1024
# Interim (1xx) answers accepted before the final one: a few 100s and 103s are normal, thousands
# are an upstream trying to keep the proxy busy.
MAX_INTERIM = 16
MAX_CHUNK_LINE = 4 * 1024
MAX_TRAILERS = 64 * 1024

# Control characters other than HTAB may not appear in a field (RFC 9110 §5.5); CR and LF in a
# value would split one header into two (request smuggling, header injection).
_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_CTL_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STATUS_LINE = re.compile(r"HTTP/1\.([01]) ([1-5]\d\d)(?: (.*))?")
# The end of a head: the first empty line, whatever mix of CRLF and bare LF ends it. (Looking for
# CRLFCRLF first would find one inside the body after a head that ended in bare LFs, and read
# body bytes as headers.)
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
CRLFCRLF = b"\r\n\r\n"
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
# Header names seen before, checked and lower-cased once: upstreams send the same few names.
_NAMES: dict[str, str] = {}
_NAMES_KEPT = 512

# Methods a request without a body is sent with no Content-Length for (aiohttp's rule: every
# other method gets `Content-Length: 0`, which some servers need to accept an empty POST).
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class InvalidResponse(Exception):
    """The upstream's bytes are not an HTTP/1.x answer. The message never quotes them."""


class InvalidRequestHead(ValueError):
    """A header name or value would break the request's framing (a control character)."""


def serialize_head(method: str, target: str, headers: Iterable[tuple[str, str]]) -> bytes:
    """The request line and headers, as one bytes object ready for a single write."""
    lines = [f"{method} {target} HTTP/1.1"]
    lines.extend([f"{name}: {value}" for name, value in headers])
    # Printable text needs no closer look (one C call); tabs and undecodable bytes do.
    if not "".join(lines).isprintable() and any(_CTL.search(line) for line in lines):
        raise InvalidRequestHead("a request header contains a control character")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


@dataclass(slots=True)
class ResponseHead:
    status: int
    reason: str
    http10: bool
    headers: list[tuple[str, str]]
    keep_alive: bool
    lowered: list[str] = field(default_factory=list)  # each header's name, lower-cased
    connection: list[str] = field(default_factory=list)  # the Connection header's tokens
    # Framing: `length` bytes, chunked, or (both unset) up to the close; `bodyless` wins.
    length: int | None = None
    chunked: bool = False
    bodyless: bool = False
    # The one Content-Length the client is told: the body's length, or for HEAD and 304 the
    # length the upstream announced. None with chunked framing, for 204, and when none was sent.
    content_length: int | None = None


def head_end(buffer: bytes | bytearray) -> tuple[int, int]:
    """(end of the head, start of the body), or (-1, -1) when the blank line has not arrived.

    Bare LF line ends are tolerated, as llhttp does in aiohttp's lenient mode; a head that used
    them is doubtful framing (`buffer[end:start] != CRLFCRLF`).
    """
    found = _BLANK_LINE.search(buffer)
    if found is None:
        return -1, -1
    return found.start(), found.end()


def parse_head(raw: bytes, method: str) -> ResponseHead:
    """Parse a response head (without its blank line) sent in answer to `method`."""
    text = raw.decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    doubtful = False
    # The common case in one C call: CRLF line ends, and nothing but printable text in between.
    if not "".join(lines).isprintable():
        lines, doubtful = _careful_lines(text)
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise InvalidResponse("the answer does not start with an HTTP/1.x status line")
    http10 = match[1] == "0"
    head = ResponseHead(int(match[2]), match[3] or "", http10, [], keep_alive=not http10)
    headers = head.headers
    lowered_names = head.lowered
    framing: list[tuple[str, str]] = []
    names = _NAMES
    for index in range(1, len(lines)):
        line = lines[index]
        name, colon, value = line.partition(":")
        lowered = names.get(name)
        if lowered is None:
            if line[:1] in (" ", "\t") and headers:
                # obs-fold (RFC 9112 §5.2): a recipient may replace it with a space.
                folded_name, folded = headers[-1]
                headers[-1] = (folded_name, folded + " " + line.strip(" \t"))
                if lowered_names[-1] in _FRAMING:
                    framing[-1] = (lowered_names[-1], headers[-1][1])
                    doubtful = True  # a folded framing header: servers disagree on its value
                continue
            if not colon or not is_token(name):
                raise InvalidResponse("the answer has a malformed header line")
            lowered = name.lower()
            if len(names) < _NAMES_KEPT:
                names[name] = lowered
        value = value.strip(" \t")
        headers.append((name, value))
        lowered_names.append(lowered)
        if lowered in _FRAMING:
            framing.append((lowered, value))
    _frame(head, method, framing)
    if doubtful:
        head.keep_alive = False
    return head


def _careful_lines(text: str) -> tuple[list[str], bool]:
    """Lines of a head with tabs, bare LF line ends or non-ASCII text, and whether any line ended
    in a bare LF; control bytes are refused."""
    bare = text.replace("\r\n", "")
    if _CTL_TEXT.search(text) or "\r" in bare:
        raise InvalidResponse("the answer's head contains control characters")
    # Bare LF line ends are tolerated, as llhttp does in aiohttp's lenient mode.
    return text.replace("\r\n", "\n").split("\n"), "\n" in bare


def _frame(head: ResponseHead, method: str, framing: list[tuple[str, str]]) -> None:
    lengths: list[str] = []
    codings: list[str] | None = None
    connection = head.connection
    for name, value in framing:
        parts = value.split(",") if "," in value else (value,)
        if name == "content-length":
            lengths.extend([part.strip() for part in parts])
        elif name == "transfer-encoding":
            codings = codings or []
            codings.extend([part.strip().lower() for part in parts if part.strip()])
        else:
            connection.extend([part.strip().lower() for part in parts])
    if "close" in connection:
        head.keep_alive = False
    elif head.http10 and "keep-alive" in connection:
        head.keep_alive = True
    if codings is not None:
        # Transfer-Encoding overrides Content-Length (RFC 9112 §6.3, point 3), and a message
        # with both may be an attempt at smuggling; in an HTTP/1.0 answer it is faulty framing
        # (§6.1). Either way the connection is not used again.
        if lengths or head.http10 or codings.count("chunked") != 1:
            head.keep_alive = False
        lengths = []
    length = _content_length(lengths) if lengths else None
    if len(lengths) > 1:
        head.keep_alive = False  # repeated equal lengths are allowed (RFC 9110 §8.6), not trusted
    if method == "HEAD" or head.status < 200 or head.status in (204, 304):
        head.bodyless = True
        head.content_length = None if head.status == 204 else length
        return
    if codings is not None:
        if codings and codings[-1] == "chunked":
            head.chunked = True
        else:
            head.keep_alive = False  # the body runs to the close
        return
    if length is not None:
        head.length = head.content_length = length
        return
    # Neither: the body runs to the close, so the connection cannot be reused.
    head.keep_alive = False


def _content_length(values: list[str]) -> int:
    """The one length that every Content-Length value states; a malformed or conflicting one
    means the answer cannot be framed, and is refused (RFC 9112 §6.3, point 5)."""
    first = values[0]
    if any(value != first for value in values) or not first.isdigit() or not first.isascii():
        raise InvalidResponse("the answer has an invalid Content-Length")
    if len(first) > 18:
        raise InvalidResponse("the answer has an invalid Content-Length")
    return int(first)


class ChunkedDecoder:
    """Undo chunked transfer coding incrementally; trailers are read and dropped."""

    __slots__ = ("_buffer", "_remaining", "_state", "done")

    _SIZE, _DATA, _DATA_END, _TRAILERS = range(4)

    def __init__(self) -> None:
        self._buffer = b""
        self._state = self._SIZE
        self._remaining = 0
        self.done = False

    def feed(self, data: bytes, out: MutableSequence[bytes]) -> bytes:
        """Append decoded body bytes to `out`; return bytes that follow the end of the body."""
        if self._buffer:
            data, self._buffer = self._buffer + data, b""
        pos, size = 0, len(data)
        while pos < size and not self.done:
            state = self._state
            if state == self._DATA:
                take = min(self._remaining, size - pos)
                out.append(data[pos : pos + take] if take != size else data)
                pos += take
                self._remaining -= take
                if not self._remaining:
                    self._state = self._DATA_END
                continue
            end = data.find(b"\n", pos)
            if end < 0:
                self._buffer = data[pos:]
                limit = MAX_TRAILERS if state == self._TRAILERS else MAX_CHUNK_LINE
                if len(self._buffer) > limit:
                    raise InvalidResponse("the answer's chunked framing is malformed")
                return b""
            line = data[pos:end].rstrip(b"\r")
            pos = end + 1
            if state == self._SIZE:
                self._remaining = _chunk_size(line)
                self._state = self._DATA if self._remaining else self._TRAILERS
            elif state == self._DATA_END:
                if line:
                    raise InvalidResponse("the answer's chunked framing is malformed")
                self._state = self._SIZE
            elif not line:
                self.done = True
        return data[pos:] if pos < size else b""


def _chunk_size(line: bytes) -> int:
    digits = line.partition(b";")[0].strip(b" \t")
    if not digits or len(digits) > 16 or digits.strip(b"0123456789abcdefABCDEF"):
        raise InvalidResponse("the answer's chunked framing is malformed")
    return int(digits, 16)


def chunk_prefix(size: int) -> bytes:
    """The size line of one chunk of a chunked request body; the chunk ends with CRLF."""
    return b"%x\r\n" % size


LAST_CHUNK = b"0\r\n\r\n"
