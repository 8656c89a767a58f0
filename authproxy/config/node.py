"""Reading config values: `Node` (a value, its key path, the shared problem list) and `${...}`.

Every block parser in `config_load` and `config_auth` reads through a `Node`. A reader records what
is wrong with its key path and returns a default, so one run lists every problem. Strings are
interpolated here: `${NAME}` reads the environment, `${file:/path}` a file, `$${` is a literal `${`.
A problem names the variable or file, never the value it resolved to.

Every value a `${...}` brings in is a secret, registered for masking wherever it turns up (logs,
`/-/status`, `check --expand`, `authproxy status`): a bot token in an upstream path is as secret as
a password. The exceptions are read with `secret=False`: values whose whole job is to be shown or
matched, and which masking would break, not protect. The listen address (masking `8080` would mask
the start-up URL and every number holding those digits), file paths (masking `$HOME` would hide
every path), route prefixes, host names and origins (an upstream's or a Redis URL's too), HTTP
methods and header names, field names (masking `token` would mask the word everywhere), a preset's
plain options, choices among fixed words, numbers and booleans.

`Shield` carries references through YAML unchanged, even unquoted inside a flow collection such as
`{password: ${PASSWORD}}`.
"""

from __future__ import annotations

import difflib
import math
import re
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

from yarl import URL

from authproxy.errors import ConfigProblem
from authproxy.secrets import REGISTRY

MISSING = object()  # the value of a key that is absent, as opposed to one set to null

# `$${` is a literal `${`; `${NAME}` an environment variable; `${file:/path}` a file's content.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# A `${...}` reference (or `$${` and what follows it up to `}`, or an unclosed `${`) on one line.
# The body excludes whitespace, quotes and backslashes: YAML folds, unquotes or unescapes those, so
# swapping such text verbatim could change its meaning. Those are left to YAML, as they always were.
_RAW_REFERENCE = re.compile(r"\$?\$\{(?:[^}\s\"'\\]*\})?")


class Shield:
    """The config text with each `${...}` swapped for a token, and the way back.

    In a flow collection YAML ends a plain scalar at `{` or `}`, so the documented
    `auth: {email: ${EMAIL}}` would be a syntax error. A token is letters and digits, valid in any
    scalar, and never one YAML would read as a number, boolean or null (nor would `${...}`). The
    random prefix, checked against the text, keeps a token from matching anything the user wrote.
    """

    def __init__(self, text: str) -> None:
        prefix = ""
        while not prefix or prefix in text:
            prefix = f"AuthproxyRef{secrets.token_hex(8)}N"
        self._token = re.compile(re.escape(prefix) + r"(\d+)Z")
        self._originals: list[str] = []
        tokens: dict[str, str] = {}  # one token per distinct text, so duplicate keys still clash

        def swap(match: re.Match[str]) -> str:
            original = match.group()
            if original not in tokens:
                tokens[original] = f"{prefix}{len(self._originals)}Z"
                self._originals.append(original)
            return tokens[original]

        self.text = _RAW_REFERENCE.sub(swap, text)

    def restore(self, text: str) -> str:
        """`text` with every token put back to the reference it stands for."""
        return self._token.sub(lambda match: self._originals[int(match[1])], text)


@dataclass(frozen=True, slots=True)
class Text:
    """A string after `${...}` interpolation; `origin` (`literal`, `env:NAME`, ...) is printable.

    `substituted` holds what each reference brought in, for a reader that registers some of them
    itself (see `config_load._upstream`).
    """

    value: str
    origin: str = "literal"
    substituted: tuple[str, ...] = field(default=(), repr=False)


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

    def keys(self, allowed: Collection[str]) -> bool:
        """Check that this is a mapping holding only `allowed` keys; False if not a mapping."""
        entries = self.entries()
        for key, node in entries or ():
            if key not in allowed:
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
        substituted value is registered for masking (see the module doc for the exceptions).
        """
        if isinstance(self.value, str):
            return _interpolate(self, self.value, escape=template, secret=secret)
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
            self.problem(f"expected a number, got {_kind(value)}")
            return None
        if not math.isfinite(value):
            self.problem("expected a finite number")
            return None
        return float(value)

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


def register_beyond_origin(read: Text, url: str) -> None:
    """Register what `${...}` put into a URL as secrets, except a value wholly inside its origin.

    Bot and webhook APIs carry their token in the path, Redis its password in the userinfo; but a
    host or port from the environment is where the proxy connects, named in its logs and status,
    and masking a port would mask that number in every log line.
    """
    try:
        parsed = URL(url)
        origin = str(parsed.origin()) if parsed.host else ""
    except ValueError:
        origin = ""
    REGISTRY.add_all(value for value in read.substituted if value not in origin)


def _interpolate(node: Node, raw: str, *, escape: bool, secret: bool) -> Text | None:
    if "${" not in raw:
        return Text(raw)
    parts: list[str] = []
    origins: list[str] = []
    substituted: list[str] = []
    ok = True
    position = 0
    for match in _REFERENCE.finditer(raw):
        parts.append(raw[position : match.start()])
        position = match.end()
        reference = match.group(1)
        if match.group() == "$${":
            parts.append("${")
        elif reference is None:
            node.problem("unclosed '${'; write '$${' for a literal '${'")
            return None
        elif (resolved := _resolve(node, reference)) is None:
            ok = False  # keep going: report every unset variable of this value at once
        else:
            value, origin = resolved
            if secret:
                REGISTRY.add(value)
            substituted.append(value)
            if escape:
                value = value.replace("{", "{{").replace("}", "}}")
            parts.append(value)
            origins.append(origin)
    parts.append(raw[position:])
    origin = ",".join(dict.fromkeys(origins)) or "literal"
    return Text("".join(parts), origin, tuple(substituted)) if ok else None


def _resolve(node: Node, reference: str) -> tuple[str, str] | None:
    """(value, origin) of one `${...}` reference; None after recording why it has none."""
    if reference.startswith("file:"):
        path = reference.removeprefix("file:")
        try:
            content = Path(expand_home(path, node.ctx.environ)).read_text(encoding="utf-8")
        except OSError as exc:
            node.problem(f"cannot read file {path or '(no path given)'}: {reason(exc)}")
            return None
        except UnicodeDecodeError:
            node.problem(f"file {path} is not UTF-8 text")
            return None
        # Editors and `echo` end a file with a newline that is not part of the secret.
        if content.endswith("\n"):
            content = content[:-2] if content.endswith("\r\n") else content[:-1]
        return content, f"file:{path}"
    if not _VARIABLE.fullmatch(reference):
        node.problem(f"'${{{reference}}}' is neither ${{NAME}} nor ${{file:/path}}")
        return None
    value = node.ctx.environ.get(reference)
    if value is None:
        node.problem(f"environment variable {reference} is not set")
        return None
    return value, f"env:{reference}"


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


def home(environ: Mapping[str, str]) -> str:
    """`$HOME` from the environment being parsed, else the user's home directory."""
    return environ.get("HOME") or str(Path.home())


def expand_home(path: str, environ: Mapping[str, str]) -> str:
    """`~` or `~/...` expanded against `home(environ)`; `~user` is left alone."""
    if path == "~" or path.startswith("~/"):
        return home(environ) + path[1:]
    return path


def reason(exc: OSError) -> str:
    """Why an OS call failed, without the path or text the exception may quote."""
    return exc.strerror or type(exc).__name__
