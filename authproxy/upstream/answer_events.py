"""What llhttp reports about an upstream's answer, judged as it arrives.

`AnswerEvents` is the object llhttp calls back while it parses (through httptools): the status
line and headers of each message, chunk headers, body pieces, the end of a message. It keeps what
one exchange has read so far and applies the rules that need llhttp's view of the message:
- a 1xx is an interim answer: at most MAX_INTERIM of them, without a body, and 101 (a switch
  nobody asked for) is refused;
- each final head passes the rules of upstream/head.py (status line, framing) or is refused;
- llhttp and our reading of Transfer-Encoding must agree on chunked framing;
- a second answer, or a body after a bodyless answer, is never read: the connection is not used
  again.

Feeding llhttp, and the limits on what is fed, are upstream/answer.py's.
"""

from __future__ import annotations

from collections import deque
from typing import NoReturn

from httptools import HttpResponseParser

from authproxy.upstream.head import ResponseHead, final_head, valid_status_line

# Interim (1xx) answers accepted before the final one: a few 100s and 103s are normal, thousands
# are an upstream trying to keep the proxy busy.
MAX_INTERIM = 16


# What the parser of a closed connection reports to: nothing, and it refers to nobody.
_DETACHED = object()


class Stop(Exception):
    """Raised in a callback to stop llhttp: what follows is not to be parsed."""


class AnswerEvents:
    """One exchange's answer as llhttp reports it; body pieces go into `body` in order.

    `head` is set once the final head is in, `complete` once the whole answer has arrived, and
    `body_bytes` counts the body so far.
    """

    __slots__ = (
        "_chunk_seen",
        "_clean",
        "_in_message",
        "_interim",
        "_method",
        "_parser",
        "_raw",
        "_reason",
        "_refused",
        "body",
        "body_bytes",
        "complete",
        "head",
        "trailing",
    )

    def __init__(self, body: deque[bytes]) -> None:
        self.body = body
        self._parser = HttpResponseParser(self)

    def close(self) -> None:
        """Let go of llhttp. Its parser and this object refer to each other: kept, the pair and
        the connection holding it would wait for the cycle collector instead of being freed when
        the connection closes (on every request, with an upstream that closes after each)."""
        self._parser = HttpResponseParser(_DETACHED)

    def _start(self, method: str) -> None:
        """Ready for the answer to a `method` request."""
        self._method = method
        self.head: ResponseHead | None = None
        self.complete = False
        self.body_bytes = 0
        self.trailing = False  # bytes came after the answer
        self._clean = False  # llhttp itself reached the end of the final answer
        self._interim = 0
        self._refused = False
        self._in_message = False
        self._chunk_seen = False
        # The message being read:
        self._reason = b""
        self._raw: list[tuple[bytes, bytes]] = []

    def _reset_message(self) -> None:
        self._reason = b""
        self._raw = []

    def on_message_begin(self) -> None:
        if self.head is not None:
            self.trailing = True  # a second answer to one request
            raise Stop
        self._in_message = True
        self._reset_message()

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        # Kept raw, and decoded once the head is complete: the loop there is cheaper than work
        # per call. Trailers arrive here too, and are dropped with the list they go to.
        self._raw.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        version = parser.get_http_version()
        if not valid_status_line(version, status, self._reason):
            self._refuse()
        if status < 200:
            self._interim += 1
            if status == 101 or self._interim > MAX_INTERIM:
                self._refuse()
            return
        head = final_head(version, status, self._reason, self._raw, self._method)
        self._raw = []  # trailers, if any, go here and are dropped
        if head is None:
            self._refuse()
        self.head = head
        if head.bodyless:
            self.complete = True

    def on_chunk_header(self) -> None:
        if self.complete:
            self.trailing = True  # a body after a bodyless answer
            raise Stop
        head = self.head
        if head is None or not head.chunked:
            self._refuse()  # llhttp and our reading of Transfer-Encoding disagree
        self._chunk_seen = True

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.trailing = True  # a body after a bodyless answer
            raise Stop
        head = self.head
        if head is None:
            # llhttp reads a Content-Length body on a 1xx other than 100, 102 and 103; an
            # interim answer has none (RFC 9112 §6.3), and its bytes are not the answer's body.
            self._refuse()
        if head.chunked and not self._chunk_seen:
            self._refuse()  # llhttp and our reading of Transfer-Encoding disagree
        self.body.append(body)
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        self._in_message = False
        if self.head is not None:
            self.complete = True
            # llhttp's own keep-alive verdict: after a close it refuses any further byte.
            self._clean = not self.trailing and self._parser.should_keep_alive()

    def _refuse(self) -> NoReturn:
        self._refused = True
        raise Stop
