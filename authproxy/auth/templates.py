"""String templates for login bodies and injected headers: `"Bearer {token}"`, `"{password|sha1}"`.

A placeholder is `{name}` or `{name|filter}` (filters chain left to right: `{x|sha1|base64}`);
`{{` and `}}` are literal braces. Templates are parsed once, when the config loads, into literal and
placeholder parts, so rendering per request is a join and a few lookups, and a syntax error is a
config error rather than a failed request.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

FILTERS: Mapping[str, Callable[[str], str]] = {
    "base64": lambda value: base64.b64encode(value.encode()).decode("ascii"),
    "sha1": lambda value: hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest(),
    "sha256": lambda value: hashlib.sha256(value.encode()).hexdigest(),
}

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Escapes first, so "{{" is never read as the start of a placeholder; a lone brace is an error.
_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


@dataclass(frozen=True, slots=True)
class Placeholder:
    name: str
    filters: tuple[Callable[[str], str], ...] = ()

    def render(self, values: Mapping[str, str]) -> str:
        value = values[self.name]
        for apply in self.filters:
            value = apply(value)
        return value


@dataclass(frozen=True, slots=True, repr=False)
class Template:
    """A parsed template; `parts` alternate freely between literal text and placeholders.

    Its repr names the placeholders only: the literal text may hold a secret.
    """

    text: str
    parts: tuple[str | Placeholder, ...]

    @property
    def names(self) -> frozenset[str]:
        """Every value name the template reads."""
        return frozenset(part.name for part in self.parts if isinstance(part, Placeholder))

    def render(self, values: Mapping[str, str]) -> str:
        """Fill the placeholders from `values`; raises `KeyError(name)` for a missing one."""
        return "".join(
            part if isinstance(part, str) else part.render(values) for part in self.parts
        )

    def __repr__(self) -> str:
        return f"Template(names={sorted(self.names)})"


def literal(text: str) -> str:
    """A template that renders to `text` as it is: its braces doubled."""
    return text.replace("{", "{{").replace("}", "}}")


@functools.lru_cache(maxsize=256)
def compile_template(text: str) -> Template:
    """Parse `text`; raises `ValueError` naming the problem and where it is.

    The message quotes only the offending placeholder, never the whole text: a template can hold a
    secret substituted from the environment (`Bearer ${TOKEN}`).

    Cached: templates are immutable, and the same few strings recur across routes and logins.
    """
    parts: list[str | Placeholder] = []
    literal: list[str] = []
    position = 0
    for match in _TOKEN.finditer(text):
        literal.append(text[position : match.start()])
        position = match.end()
        token = match.group()
        if token in ("{{", "}}"):
            literal.append(token[0])
        elif match.group(1) is None:
            raise ValueError(
                f"unbalanced {token!r} at position {match.start()}; "
                "write '{{' or '}}' for a literal brace"
            )
        else:
            if literal:
                parts.append("".join(literal))
                literal.clear()
            parts.append(_placeholder(match.group(1)))
    literal.append(text[position:])
    if tail := "".join(literal):
        parts.append(tail)
    return Template(text, tuple(parts))


def _placeholder(inner: str) -> Placeholder:
    name, *filter_names = (piece.strip() for piece in inner.split("|"))
    if not _NAME.fullmatch(name):
        raise ValueError(f"placeholder {{{inner}}} does not start with a value name")
    filters = []
    for filter_name in filter_names:
        if filter_name not in FILTERS:
            expected = ", ".join(sorted(FILTERS))
            raise ValueError(
                f"unknown filter {filter_name!r} in {{{inner}}}; expected one of: {expected}"
            )
        filters.append(FILTERS[filter_name])
    return Placeholder(name, tuple(filters))
