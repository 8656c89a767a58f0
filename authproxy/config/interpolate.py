"""`${...}` in config text: what a reference reads, how it survives YAML, and what is secret.

`${NAME}` reads the environment, `${file:/path}` a file (`~` is the home of the environment being
parsed), and `$${` is a literal `${`. A problem names the variable or file, never the value it
resolved to. `Shield` carries references through YAML unchanged, even unquoted inside a flow
collection such as `{password: ${PASSWORD}}`.

Every value a `${...}` brings in is a secret, registered for masking wherever it turns up (logs,
`/-/status`, `check --expand`, `authproxy status`): a bot token in an upstream path is as secret as
a password. The exceptions are read with `secret=False`: values whose whole job is to be shown or
matched, and which masking would break, not protect. The listen address (masking `8080` would mask
the start-up URL and every number holding those digits), file paths (masking `$HOME` would hide
every path), route prefixes, host names and origins (an upstream's or a Redis URL's too), HTTP
methods and header names, field names (masking `token` would mask the word everywhere), a preset's
plain options, choices among fixed words, numbers and booleans.

This module knows nothing of `Node`: `config/node.py` reads through it, and passes the place to
record a problem. `expand_home` and `reason` serve every reader of a path (a `${file:...}`, the
config file, the token store, a CA file).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from yarl import URL

from authproxy.secrets import REGISTRY

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
    itself (see `_upstream` in `config/routes_block.py`).
    """

    value: str
    origin: str = "literal"
    substituted: tuple[str, ...] = field(default=(), repr=False)


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


def interpolate(
    raw: str,
    environ: Mapping[str, str],
    problem: Callable[[str], None],
    *,
    escape: bool,
    secret: bool,
) -> Text | None:
    """`raw` with every reference replaced; None once `problem` has been told why it cannot be.

    With `escape`, braces in substituted values are doubled (a template's `{{`); with `secret`,
    every substituted value is registered for masking.
    """
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
            problem("unclosed '${'; write '$${' for a literal '${'")
            return None
        elif (resolved := _resolve(reference, environ, problem)) is None:
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


def _resolve(
    reference: str, environ: Mapping[str, str], problem: Callable[[str], None]
) -> tuple[str, str] | None:
    """(value, origin) of one `${...}` reference; None after recording why it has none."""
    if reference.startswith("file:"):
        path = reference.removeprefix("file:")
        try:
            content = Path(expand_home(path, environ)).read_text(encoding="utf-8")
        except OSError as exc:
            problem(f"cannot read file {path or '(no path given)'}: {reason(exc)}")
            return None
        except UnicodeDecodeError:
            problem(f"file {path} is not UTF-8 text")
            return None
        # Editors and `echo` end a file with a newline that is not part of the secret.
        if content.endswith("\n"):
            content = content[:-2] if content.endswith("\r\n") else content[:-1]
        return content, f"file:{path}"
    if not _VARIABLE.fullmatch(reference):
        problem(f"'${{{reference}}}' is neither ${{NAME}} nor ${{file:/path}}")
        return None
    value = environ.get(reference)
    if value is None:
        problem(f"environment variable {reference} is not set")
        return None
    return value, f"env:{reference}"


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
