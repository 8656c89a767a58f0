"""Reading config values: `Node` (a value, its key path, the shared problem list) and messages.

Every block parser under `config/` reads through a `Node`. A reader records what is wrong with its
key path and returns a default, so one run lists every problem. Strings are interpolated as they
are read (`Node.text`, see `config/interpolate.py` for `${...}` and for which values are secret).
`unknown` and `did_you_mean` word the problems about a name that is not one of the choices.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from authproxy.config.interpolate import Text, interpolate
from authproxy.config.units import unit_hint
from authproxy.errors import ConfigProblem
from authproxy.secrets import Secret

MISSING = object()  # the value of a key that is absent, as opposed to one set to null


@dataclass(slots=True)
class Context:
    """What every node of one parse shares: the environment, and the problems found so far."""

    environ: Mapping[str, str]
    problems: list[ConfigProblem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Node:
    """One YAML value and its dotted key path; readers record problems and return a default."""

    value: object
    path: str
    ctx: Context

    @property
    def missing(self) -> bool:
        return self.value is MISSING

    def problem(self, message: str) -> None:
        self.ctx.problems.append(ConfigProblem(self.path, message))

    def child(self, key: str) -> Node:
        value = self.value.get(key, MISSING) if isinstance(self.value, dict) else MISSING
        return Node(value, f"{self.path}.{key}" if self.path else key, self.ctx)

    def keys(self, allowed: Collection[str], elsewhere: Mapping[str, str] | None = None) -> bool:
        """Check that this is a mapping holding only `allowed` keys; False if not a mapping.

        `elsewhere` names the block a key not allowed here belongs in: a hint to move it beats a
        did-you-mean to the nearest name (`username` at route level is not `upstream`).
        """
        entries = self.entries()
        for key, node in entries or ():
            if key in allowed:
                continue
            if elsewhere and key in elsewhere:
                node.problem(f"belongs under '{elsewhere[key]}': move it there")
            else:
                node.problem(unknown("key", key, allowed, quote=False))
        return entries is not None

    def entries(self) -> list[tuple[str, Node]] | None:
        """The (key, child) pairs of a mapping with string keys; None (reported) if not one."""
        if not isinstance(self.value, dict):
            self.problem(f"expected a mapping, got {_kind(self.value)}")
            return None
        for key in self.value:
            if not isinstance(key, str):
                self.problem(f"keys must be strings, got {_kind(key)}")
        return [(key, self.child(key)) for key in self.value if isinstance(key, str)]

    def pairs(self) -> list[tuple[str, Node]]:
        """Like `entries`, for an optional mapping: [] when absent or (reported) not a mapping."""
        return [] if self.missing else self.entries() or []

    def items(self) -> list[Node] | None:
        """The children of a list; None (reported) for another type."""
        if not isinstance(self.value, list):
            self.problem(f"expected a list, got {_kind(self.value)}")
            return None
        return [Node(value, f"{self.path}[{i}]", self.ctx) for i, value in enumerate(self.value)]

    def text(self, *, template: bool = False, secret: bool = True) -> Text | None:
        """The interpolated string, or None (reported) if this is not one.

        With `template`, braces in substituted values are escaped, so an environment value is
        always data and never read as a `{placeholder}`. With `secret` (the default), every
        substituted value is registered for masking (`config/interpolate.py` lists the exceptions).
        """
        if isinstance(self.value, str):
            return interpolate(
                self.value, self.ctx.environ, self.problem, escape=template, secret=secret
            )
        hint = " (quote it)" if isinstance(self.value, int | float | bool) else ""
        self.problem(f"expected a string, got {_kind(self.value)}{hint}")
        return None

    @overload
    def string(self, default: str, *, secret: bool = True) -> str: ...
    @overload
    def string(
        self, default: None = None, *, required: bool, secret: bool = True
    ) -> str | None: ...
    def string(
        self, default: str | None = None, *, required: bool = False, secret: bool = True
    ) -> str | None:
        if self.missing:
            if required:
                self.problem("required")
            return default
        text = self.text(secret=secret)
        return default if text is None else text.value

    def credential(self) -> Secret | None:
        """A non-empty string as a `Secret` with its origin; None if absent or (reported) not."""
        text = None if self.missing else self.text()
        if text is None:
            return None
        if not text.value:
            self.problem("is empty" + ("" if text.origin == "literal" else f" ({text.origin})"))
            return None
        return Secret(text.value, text.origin)

    def choice(self, options: Sequence[str], default: str | None, noun: str) -> str | None:
        """One of `options`; absent gives `default` (None: required)."""
        text = None if self.missing else self.text(secret=False)  # one of fixed, public words
        if text is None or text.value in options:
            if self.missing and default is None:
                self.problem("required")
            return default if text is None else text.value
        shown = f"'{text.value}'" if text.origin == "literal" else f"(from {text.origin})"
        self.problem(f"unknown {noun} {shown}; expected one of: {', '.join(options)}")
        return default

    def boolean(self, default: bool) -> bool:
        value = self._scalar()
        if isinstance(value, bool):
            return value
        if value is not MISSING:
            self.problem(f"expected true or false, got {_kind(value)}")
        return default

    def number(self, default: float, *, minimum: float = 0.0, inclusive: bool = False) -> float:
        """A finite number above `minimum` (or equal to it, with `inclusive`)."""
        value = self._numeric()
        if value is None:
            return default
        if value < minimum or (value == minimum and not inclusive):
            self.problem(f"must be {'at least' if inclusive else 'greater than'} {minimum:g}")
            return default
        return value

    def integer(self, default: int, *, minimum: int, maximum: int | None = None) -> int:
        value = self._numeric()
        if value is None:
            return default
        if not value.is_integer():
            self.problem("expected a whole number")
        elif value < minimum or (maximum is not None and value > maximum):
            limit = f"at least {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            self.problem(f"must be {limit}")
        else:
            return int(value)
        return default

    def _numeric(self) -> float | None:
        value = self._scalar()
        if value is MISSING:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.problem(self._unit_hint(value) or f"expected a number, got {_kind(value)}")
            return None
        if not math.isfinite(value):
            self.problem("expected a finite number")
            return None
        return float(value)

    def _unit_hint(self, value: object) -> str:
        """`5s` where seconds are meant: say to write `5`. Only for a value written in the file:
        one that came from the environment is never quoted."""
        literal = isinstance(self.value, str) and "${" not in self.value
        if not (literal and isinstance(value, str)):
            return ""
        return unit_hint(value, self.path.rpartition(".")[2])

    def _scalar(self) -> object:
        """The value, MISSING if absent or unresolvable; `${...}` text is typed as YAML would."""
        if not (isinstance(self.value, str) and "${" in self.value):
            return self.value
        text = self.text(secret=False)  # a number or a boolean: nothing worth masking
        if text is None:
            return MISSING
        if text.value in ("true", "false"):
            return text.value == "true"
        for parse in (int, float):
            try:
                return parse(text.value)
            except ValueError:
                pass
        return text.value


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if value is MISSING:
        return "nothing"
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    kinds |= {dict: "a mapping", list: "a list"}
    return kinds.get(type(value), f"a {type(value).__name__}")


# ---- messages and paths ----------------------------------------------------------------------


def unknown(noun: str, word: str, choices: Collection[str], *, quote: bool = True) -> str:
    """`unknown key; did you mean 'password'?`, or the list of choices when none is close."""
    head = f"unknown {noun} '{word}'" if quote else f"unknown {noun}"
    if hint := did_you_mean(word, choices):
        return f"{head}; {hint}"
    return f"{head}; expected one of: {', '.join(sorted(choices))}" if choices else head


def did_you_mean(word: str, choices: Collection[str]) -> str:
    """`did you mean 'password'?` for the closest choice, or "" when none is close (difflib)."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f"did you mean '{close[0]}'?" if close else ""
