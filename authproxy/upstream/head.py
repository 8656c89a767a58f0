"""The final head of an upstream's answer: our rules on what llhttp parsed, and its framing.

`ResponseHead` is what the rest of the proxy reads of an answer: status, reason, headers as
received, and the framing and keep-alive the answer gets. `final_head` builds it from llhttp's
parts: header text is decoded as UTF-8 with `surrogateescape`, like aiohttp's own parser (bytes
that are not UTF-8 travel through unchanged), and Content-Length, Transfer-Encoding and
Connection are judged by RFC 9112 §6.3 and §9.3; the answer to HEAD, a 204 and a 304 have no
body. Where llhttp would accept them, a status outside 100-599, a version other than HTTP/1.0
and 1.1, a control character in the reason phrase and a Content-Length of more than 18 digits
are refused. Pure: no parser, no sockets (upstream/answer.py drives llhttp).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Control characters other than HTAB may not appear in a reason phrase (RFC 9112 §4).
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})
# Header names seen before, decoded and lower-cased once: upstreams send the same few names.
_NAMES: dict[bytes, tuple[str, str]] = {}
_NAMES_KEPT = 512


@dataclass(slots=True)
class ResponseHead:
    """An answer's final head, as received, with the framing and keep-alive `frame` gave it."""

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


def valid_status_line(version: str, status: int, reason: bytes) -> bool:
    """Whether the status line of a head (interim or final) may be read on."""
    return version in ("1.1", "1.0") and 100 <= status <= 599 and not _CTL.search(reason)


def final_head(
    version: str, status: int, reason: bytes, raw: list[tuple[bytes, bytes]], method: str
) -> ResponseHead | None:
    """The final head from llhttp's parts, decoded and framed; None: refuse the answer."""
    text = reason.decode("utf-8", "surrogateescape")
    head = ResponseHead(status, text, version == "1.0", [], keep_alive=version == "1.1")
    framing = _decode_headers(raw, head.headers, head.lowered)
    return head if _frame(head, method, framing) else None


def _decode_headers(
    raw: list[tuple[bytes, bytes]], headers: list[tuple[str, str]], lowered: list[str]
) -> list[tuple[str, str]]:
    """Fill `headers` and `lowered` from llhttp's raw fields; return the framing ones."""
    names = _NAMES
    framing: list[tuple[str, str]] = []
    for name, value in raw:
        known = names.get(name)
        if known is None:
            text = name.decode("ascii")  # llhttp accepts only token characters
            known = (text, text.lower())
            if len(names) < _NAMES_KEPT:
                names[name] = known
        # llhttp drops the whitespace before a value (OWS, RFC 9110 §5.5), not the one after it.
        decoded = value.decode("utf-8", "surrogateescape").rstrip(" \t")
        headers.append((known[0], decoded))
        lowered.append(known[1])
        if known[1] in _FRAMING:
            framing.append((known[1], decoded))
    return framing


def _frame(head: ResponseHead, method: str, framing: list[tuple[str, str]]) -> bool:
    """Set the head's framing and keep-alive by RFC 9112 §6.3 and §9.3; False: refuse it.

    llhttp has refused Content-Length with Transfer-Encoding and malformed or repeated lengths
    already (a careful reading leaves one length at most).
    """
    length: str | None = None
    codings: list[str] | None = None
    connection = head.connection
    for name, value in framing:
        if name == "content-length":
            length = value
        elif name == "transfer-encoding":
            codings = codings or []
            codings.extend([part.strip().lower() for part in value.split(",")])
        else:
            connection.extend([part.strip().lower() for part in value.split(",")])
    if "close" in connection:
        head.keep_alive = False
    elif head.http10 and "keep-alive" in connection:
        head.keep_alive = True
    if length is not None and len(length) > 18:
        return False
    bodyless = method == "HEAD" or head.status in (204, 304)
    if codings is not None:
        # llhttp reads the body as chunked exactly when the last coding is chunked. Anything
        # else (chunked twice, empty elements, other codings, HTTP/1.0) is faulty framing
        # (RFC 9112 §6.1): the connection is not used again.
        chunked = codings[-1] == "chunked"
        head.chunked = chunked and not bodyless
        if head.http10 or codings.count("chunked") != 1 or "" in codings or not chunked:
            head.keep_alive = False
        length = None
    size = int(length) if length is not None else None
    if bodyless:
        head.bodyless = True
        head.content_length = None if head.status == 204 else size
    elif size is not None:
        head.length = head.content_length = size
    elif codings is None:
        head.keep_alive = False  # neither: the body runs to the close
    return True
