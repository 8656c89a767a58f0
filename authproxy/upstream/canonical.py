"""The careful reading of an answer head llhttp refused: RFC 9112's one reading, in strict syntax.

Some heads llhttp refuses outright where a careful reading is possible: bare LF line ends, folded
lines, repeated equal Content-Lengths, Content-Length next to Transfer-Encoding, an empty
Transfer-Encoding. For those alone, `canonical_head` rewrites the head into the one reading
RFC 9112 gives it, and says whether its framing was doubtful; llhttp then parses the result,
strictly, again (upstream/answer.py). `CarefulHeads` cuts the heads of such an answer out of
the bytes as they arrive, one at a time, within the head budget. A connection that carried a
doubtful head is never used again: a server and a proxy that disagree on where an answer ends
are how responses get desynchronised (RFC 9112 §11.2).

Pure code over bytes: no parser, no sockets.
"""

from __future__ import annotations

import re

from authproxy.errors import InvalidAnswer

CRLF = b"\r\n"
CRLFCRLF = CRLF + CRLF
# The end of a head: the first empty line, whatever mix of CRLF and bare LF ends it.
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")


class CarefulHeads:
    """The heads of an answer llhttp refused, cut out one at a time as its bytes arrive.

    `budget` is how many head bytes may arrive in all (interim heads included); more raise
    InvalidAnswer. What follows the last head taken is the body, for `rest()`.
    """

    __slots__ = ("_budget", "_buffer")

    def __init__(self, received: bytes, budget: int) -> None:
        self._buffer = received
        self._budget = budget

    @property
    def midway(self) -> bool:
        """Part of a head has arrived."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_head(self) -> tuple[bytes, bool] | None:
        """The next head in canonical form, blank line included, and whether its framing is
        doubtful; None while the head has not arrived whole."""
        buffer = self._buffer
        found = _BLANK_LINE.search(buffer)
        if found is None:
            if len(buffer) > self._budget:
                raise InvalidAnswer()  # the upstream's answer head is too large
            return None
        end, start = found.span()
        self._budget -= start
        if self._budget < 0:
            raise InvalidAnswer()  # the upstream's answer head is too large
        head, doubtful = canonical_head(buffer[:end])
        self._buffer = buffer[start:]
        return head + CRLFCRLF, doubtful or buffer[end:start] != CRLFCRLF

    def rest(self) -> bytes:
        """What arrived after the heads taken so far; the reading is then over."""
        rest, self._buffer = self._buffer, b""
        return rest


def canonical_head(raw: bytes) -> tuple[bytes, bool]:
    """A head llhttp refused (without its blank line), as RFC 9112 reads it, in strict syntax;
    and whether its framing is doubtful.

    Bare LF line ends become CRLF (doubtful); folded lines (obs-fold, RFC 9112 §5.2) are joined
    with a space (doubtful when a framing header was folded); repeated equal Content-Length
    values become one (RFC 9110 §8.6; doubtful); Content-Length next to Transfer-Encoding goes
    (Transfer-Encoding wins, RFC 9112 §6.3; doubtful), and so does an empty Transfer-Encoding
    (the body then runs to the close). Anything else stays as it was, for llhttp to refuse.
    """
    lines = raw.split(b"\n")
    doubtful = False
    for index in range(len(lines) - 1):
        if lines[index].endswith(b"\r"):
            lines[index] = lines[index][:-1]
        else:
            doubtful = True  # a bare LF
    kept: list[bytes] = lines[:1]
    names: list[bytes] = [b""]
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t") and len(kept) > 1:
            kept[-1] += b" " + line.strip(b" \t")
            doubtful = doubtful or names[-1] in (b"content-length", b"transfer-encoding")
            continue
        kept.append(line)
        names.append(line.partition(b":")[0].lower())
    framing_doubt, kept = _one_framing(kept, names)
    return CRLF.join(kept), doubtful or framing_doubt


def _one_framing(lines: list[bytes], names: list[bytes]) -> tuple[bool, list[bytes]]:
    """The head's lines with one framing at most, and whether any was dropped."""
    values = [line.partition(b":")[2].strip(b" \t") for line in lines]
    codings = [index for index, name in enumerate(names) if name == b"transfer-encoding"]
    lengths = [index for index, name in enumerate(names) if name == b"content-length"]
    if codings:
        drop = {index for index in codings if not values[index]}
        drop.update(lengths)
        if not drop:
            return False, lines
        return True, [line for index, line in enumerate(lines) if index not in drop]
    stated = [part.strip(b" \t") for index in lengths for part in values[index].split(b",")]
    if len(stated) < 2 or any(length != stated[0] for length in stated):
        return False, lines  # one length (llhttp judges it), or lengths that disagree: refused
    first = lengths[0]
    kept = [line for index, line in enumerate(lines) if index not in lengths[1:]]
    kept[first] = b"Content-Length: " + stated[0]
    return True, kept
