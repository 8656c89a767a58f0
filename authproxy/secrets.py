"""Secret values: a masked type, and the registry the log redaction reads.

Every credential read from the config and every token the engine obtains is registered here, so the
one redaction processor in `logging.py` can mask it wherever it turns up, including inside strings
nobody expected to carry it (an upstream error message, an exception text).
"""

from __future__ import annotations

import re
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
    """The set of live secret values, compiled into one regex for fast scrubbing."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        if len(value) < MIN_REDACTABLE_LENGTH or value in self._values:
            return
        with self._lock:
            self._values.add(value)
            self._pattern = None

    def add_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.add(value)

    def __contains__(self, value: str) -> bool:
        return value in self._values

    def scrub(self, text: str) -> str:
        """Return `text` with every registered secret replaced by the mask."""
        if not self._values:
            return text
        pattern = self._pattern
        if pattern is None:
            with self._lock:
                # Longest first, so a secret that contains another is masked whole.
                ordered = sorted(self._values, key=len, reverse=True)
                pattern = self._pattern = re.compile("|".join(map(re.escape, ordered)))
        return pattern.sub(MASK, text)


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
