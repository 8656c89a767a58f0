"""Secret values: a masked type, and the registry the log redaction reads.

Every credential read from the config and every token the engine holds is registered here, so
the one redaction processor in `logs/setup.py` can mask it wherever it turns up, including inside
strings nobody expected to carry it (an upstream error message, an exception text).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TypeVar, cast

MASK = "<redacted>"

# Values shorter than this are not registered for substring redaction: masking every "1" or "ok"
# in every log line would destroy the logs and protect nothing a guesser could not guess.
MIN_REDACTABLE_LENGTH = 4


class Secret:
    """A string that never shows itself by accident: str() and repr() are masked.

    `reveal()` is the one way to the value, and a grep for it finds every place that uses one.
    `origin` says where it came from (`env:COSMIC_PASSWORD`, `file:/run/secrets/x`, `literal`),
    which is safe to print.
    """

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "literal") -> None:
        self._value = value
        self.origin = origin
        REGISTRY.add(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK}, origin={self.origin!r})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("authproxy.Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)


class SecretRegistry:
    """The secret values that can still turn up in output, for the one redaction processor.

    Two kinds, so that the set stays as small as what is live (a rotating API hands out a new
    token on every answer; a set of every token ever seen grew without bound and made each log
    line slower than the last):
    - `add`: values that live as long as the process (credentials from the config, keys);
    - `hold` / `release`: values that live as long as something holds them (a token: its `Grant`
      holds its values while the Grant exists). A released value stays masked for the next
      `RECENTLY_RELEASED` releases, for a log line about a token that was just replaced.

    Scrubbing is a loop of substring searches over the values, longest first: measured faster
    than one regex alternation of the same values, and it needs no compiling when the set
    changes, which it does on every rotation.
    """

    RECENTLY_RELEASED = 32

    def __init__(self) -> None:
        self._permanent: set[str] = set()
        self._held: dict[str, int] = {}
        self._recent: dict[str, None] = {}  # insertion-ordered: the oldest is dropped first
        self._ordered: tuple[str, ...] | None = ()
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        """Mask `value` for the life of the process."""
        if len(value) < MIN_REDACTABLE_LENGTH or value in self._permanent:
            return
        with self._lock:
            self._permanent.add(value)
            self._ordered = None

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def hold(self, values: Iterable[str]) -> None:
        """Mask each of `values` until a matching `release`; holds of one value are counted."""
        with self._lock:
            for value in values:
                if len(value) >= MIN_REDACTABLE_LENGTH:
                    count = self._held.get(value, 0)
                    self._held[value] = count + 1
                    if not count and value not in self._recent:
                        self._ordered = None

    def release(self, values: Iterable[str]) -> None:
        """Undo one `hold` of each value; one no longer held is kept among the recent ones."""
        with self._lock:
            for value in values:
                count = self._held.get(value)
                if count is None:
                    continue
                if count > 1:
                    self._held[value] = count - 1
                    continue
                del self._held[value]
                self._recent.pop(value, None)
                self._recent[value] = None
                if len(self._recent) > self.RECENTLY_RELEASED:
                    del self._recent[next(iter(self._recent))]
                self._ordered = None

    def __contains__(self, value: str) -> bool:
        return value in self._permanent or value in self._held or value in self._recent

    def __len__(self) -> int:
        return len(self._values())

    def _values(self) -> tuple[str, ...]:
        ordered = self._ordered
        if ordered is None:
            with self._lock:
                values = self._permanent.union(self._held, self._recent)
                # Longest first, so a secret that contains another is masked whole.
                ordered = self._ordered = tuple(sorted(values, key=len, reverse=True))
        return ordered

    def scrub(self, text: str) -> str:
        """Return `text` with every secret value that can still appear replaced by the mask."""
        for value in self._values():
            if value in text:
                text = text.replace(value, MASK)
        return text


REGISTRY = SecretRegistry()

Document = TypeVar("Document")


def masked(document: Document) -> Document:
    """A JSON-like `document` (dicts, lists, strings, numbers) with every registered secret masked
    in every string: for whatever shows config values outside the logs (`/-/status`, `check
    --expand`, `authproxy status`), which the log redaction never sees."""
    return cast(Document, _masked(document))


def _masked(value: object) -> object:
    if isinstance(value, str):
        return REGISTRY.scrub(value)
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    return value
