"""Reading an upstream's answer: llhttp (through httptools) frames it, our rules judge it.

llhttp is the HTTP/1.1 parser of Node.js, written as a state machine and fuzzed; it runs strict
here and does the byte work: status line, header syntax, Content-Length and chunked framing,
trailers. What it reports is judged as it arrives (upstream/answer_events.py); `AnswerParser`
feeds it, for each exchange of one connection, within limits llhttp leaves to its caller:
- the heads of one answer (interim ones included) hold at most MAX_HEAD bytes together, and
  chunk framing (size lines, extensions, trailers) at most MAX_FRAMING bytes in a row;
- bytes after the answer are never read as anything: the connection is not used again.

An answer whose framing is doubtful is read once, and its connection is never used again: a
server and a proxy that disagree on where an answer ends are how responses get desynchronised
(RFC 9112 §11.2). When llhttp refuses a head, the heads are read again carefully, each in the
canonical form upstream/canonical.py gives it.
"""

from __future__ import annotations

from collections import deque

from httptools import HttpParserError, HttpResponseParser

from authproxy.errors import InvalidAnswer
from authproxy.upstream.answer_events import MAX_INTERIM, AnswerEvents
from authproxy.upstream.canonical import CarefulHeads

__all__ = ["MAX_FRAMING", "MAX_HEAD", "MAX_INTERIM", "AnswerParser"]

# A head larger than this is not an answer we want to parse (aiohttp's server allows 8 KiB
# per line; all heads of an answer together in 64 KiB is generous).
MAX_HEAD = 64 * 1024
# Chunk framing bytes in a row that bring no body byte: size lines, extensions and trailers are
# parsed and dropped, but a stream of them is an upstream trying to keep the proxy busy.
MAX_FRAMING = 64 * 1024


class AnswerParser(AnswerEvents):
    """One exchange's answer, fed as it arrives (see AnswerEvents for what it reports).

    `reusable` says whether the connection may carry another exchange. `feed` raises
    InvalidAnswer for an answer that cannot be framed.
    """

    __slots__ = ("_careful", "_framing_run", "_head_bytes", "_held", "doubtful")

    def __init__(self, method: str, body: deque[bytes]) -> None:
        super().__init__(body)
        self._start(method)

    def restart(self, method: str) -> None:
        """Read the next exchange's answer on the same connection.

        llhttp reads on from where the last answer ended when it reached that end itself;
        otherwise (an answer to HEAD, a careful reading, an error) a new one starts. Reusing
        one parser matters beyond its own cost: it and this object refer to each other, so a
        pair made per exchange was garbage only the cycle collector could free, about one
        collection every hundred requests and most of the proxy's time in the collector.
        """
        if not self._clean or self._careful is not None:
            self._parser = HttpResponseParser(self)
        self._start(method)

    def _start(self, method: str) -> None:
        super()._start(method)
        self.doubtful = False  # the framing of a head was doubtful
        self._head_bytes = 0  # bytes read before the final head was complete
        self._held: list[bytes] = []  # those bytes, for a careful second reading
        self._careful: CarefulHeads | None = None
        self._framing_run = 0  # bytes read in a row without a body byte (chunked bodies)

    @property
    def reusable(self) -> bool:
        head = self.head
        return (
            self.complete
            and head is not None
            and head.keep_alive
            and not self.doubtful
            and not self.trailing
        )

    @property
    def until_close(self) -> bool:
        """The body is delimited by the close of the connection."""
        head = self.head
        return head is not None and head.length is None and not head.chunked

    @property
    def midway(self) -> bool:
        """Part of a head has arrived."""
        careful = self._careful
        return self.head is None and (self._in_message or (careful is not None and careful.midway))

    def feed(self, data: bytes) -> None:
        if self.complete:
            self.trailing = True  # never parsed: more than the answer is not to be trusted
        elif self.head is not None:
            self._feed_body(data)
        elif self._careful is not None:
            self._careful.feed(data)
            self._read_carefully(self._careful)
        else:
            self._feed_head(data)

    # ---- the head ------------------------------------------------------------------------------

    def _feed_head(self, data: bytes) -> None:
        self._held.append(data)
        budget = MAX_HEAD - self._head_bytes
        head_part, rest = (data, b"") if len(data) <= budget else (data[:budget], data[budget:])
        self._head_bytes += len(head_part)
        try:
            self._parser.feed_data(head_part)
        except HttpParserError:
            if self._refused:
                raise InvalidAnswer() from None  # the upstream's answer was refused
            if self.head is None:
                self._start_careful_reading()
                return
            self._after_error()  # the head was fine; what followed it was not
            return
        if self.head is None:
            if rest or self._head_bytes >= MAX_HEAD:
                raise InvalidAnswer()  # the upstream's answer head is too large
            return
        self._held = []
        if rest and not self.complete:
            self._feed_body(rest)
        elif rest:
            self.trailing = True

    def _start_careful_reading(self) -> None:
        """llhttp refused a head: read the heads again, each in its canonical form."""
        self._careful = careful = CarefulHeads(b"".join(self._held), MAX_HEAD)
        self._held = []
        self._interim = 0
        self._parser = HttpResponseParser(self)
        self._read_carefully(careful)

    def _read_carefully(self, careful: CarefulHeads) -> None:
        while self.head is None:
            found = careful.next_head()
            if found is None:
                return
            head, doubtful = found
            if doubtful:
                self.doubtful = True
            try:
                self._parser.feed_data(head)
            except HttpParserError:
                raise InvalidAnswer() from None  # the upstream's answer is not HTTP/1.x
        rest = careful.rest()
        if rest and not self.complete:
            self._feed_body(rest)
        elif rest:
            self.trailing = True

    # ---- the body ------------------------------------------------------------------------------

    def _feed_body(self, data: bytes) -> None:
        head = self.head
        if head is not None and head.length is not None:
            self._take_sized(data, head.length)
            return
        before = self.body_bytes
        try:
            self._parser.feed_data(data)
        except HttpParserError:
            self._after_error()
        if self.head is not None and self.head.chunked and not self.complete:
            self._framing_run = 0 if self.body_bytes != before else self._framing_run + len(data)
            if self._framing_run > MAX_FRAMING:
                raise InvalidAnswer()  # the upstream's chunk framing is too long

    def _take_sized(self, data: bytes, length: int) -> None:
        """More of a Content-Length body, passed on as it came. llhttp would only count it, and
        copy every byte to hand it over: that copy cost more than sending the bytes on. llhttp
        has not seen the end of this answer, so the next one starts a new parser."""
        remaining = length - self.body_bytes
        if len(data) > remaining:
            self.trailing = True  # never parsed: more than the answer is not to be trusted
            data = data[: max(remaining, 0)]
        if data:
            self.body.append(data)
            self.body_bytes += len(data)
        if self.body_bytes >= length:
            self.complete = True

    def _after_error(self) -> None:
        if self.complete:
            self.trailing = True  # bytes after the answer that llhttp could not read either
            return
        raise InvalidAnswer()  # the upstream's answer body is malformed
