"""YAML -> frozen `Settings`, reporting every problem in one pass, each with its key path.

`load_settings` reads the file and `parse_settings` walks the data. There is one small function per
block; each reads a `Node` (a value, its dotted key path and the shared problem list), records what
is wrong, and carries on, so one run lists everything. The auth block is in `config_auth.py`.

Problem messages name keys, environment variables and files. They never hold a value that came from
the environment or a file, and this module prints nothing.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import yaml
from yarl import URL

from authproxy.config import (
    ListenAddress,
    Route,
    Settings,
    Timeouts,
    TlsSettings,
    TokenStoreSettings,
)
from authproxy.config_auth import parse_auth, unknown
from authproxy.errors import ConfigError, ConfigProblem
from authproxy.secrets import REGISTRY

TOP_KEYS = ("listen", "token_store", "shutdown_grace", "limits", "routes")
LIMIT_KEYS = ("header_timeout", "keepalive_timeout", "max_header_size")
ROUTE_KEYS = ("upstream", "prefix", "timeout", "tls", "forwarded_headers", "auth")

_ROUTE_NAME = re.compile(r"[A-Za-z0-9_-]+")
# RFC 1123 host names; a name of digits and dots only must also parse as IPv4 (see parse_listen).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def load_settings(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and parse the config file at `path`; raises `ConfigError` listing every problem."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem("", f"cannot read the file: {_reason(exc)}")
        raise ConfigError(source, [problem]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, [ConfigProblem("", "the file is not UTF-8 text")]) from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigProblem("", _yaml_message(exc))]) from None
    return parse_settings(data, source=source, environ=os.environ if environ is None else environ)


def parse_settings(data: object, *, source: str, environ: Mapping[str, str]) -> Settings:
    """Turn parsed YAML into `Settings`; raises `ConfigError(source, problems)` naming them all."""
    if not isinstance(data, dict):
        message = "expected a mapping of settings with at least 'routes'"
        raise ConfigError(source, [ConfigProblem("", message)])
    ctx = Context(environ)
    root = Node(data, "", ctx)
    root.keys(TOP_KEYS)
    listen = _listen(root.child("listen"))
    token_store = _token_store(root.child("token_store"), environ)
    grace = root.child("shutdown_grace").number(10.0)
    header_timeout, keepalive_timeout, max_header_size = _limits(root.child("limits"))
    routes = _routes(root.child("routes"))
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    return Settings(
        listen=listen,
        routes=routes,
        token_store=token_store,
        shutdown_grace=grace,
        header_timeout=header_timeout,
        keepalive_timeout=keepalive_timeout,
        max_header_size=max_header_size,
        source=source,
    )


def parse_listen(text: str) -> ListenAddress:
    """Parse `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:9000`); port 0 picks one."""
    if text.startswith("["):
        host, bracket, port = text[1:].partition("]:")
        if not bracket:
            raise ValueError("expected [IPV6]:PORT, e.g. [::1]:8080")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("the host in brackets is not an IPv6 address") from None
    else:
        host, colon, port = text.rpartition(":")
        if not colon or not host:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080")
        if ":" in host:
            raise ValueError("write an IPv6 host in brackets, e.g. [::1]:8080")
        if not _is_host(host):
            raise ValueError("the host is neither an IP address nor a host name")
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("the port must be a number from 0 to 65535")
    return ListenAddress(host, int(port))


def default_token_store_path(environ: Mapping[str, str]) -> str:
    """`$XDG_STATE_HOME/authproxy/tokens.json`, else `~/.local/state/authproxy/tokens.json`."""
    # The XDG base directory spec says to ignore a relative XDG_STATE_HOME.
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        state = os.path.join(_home(environ), ".local", "state")
    return os.path.join(state, "authproxy", "tokens.json")


# ---- top-level blocks ------------------------------------------------------------------------


def _listen(node: Node) -> ListenAddress:
    text = node.string(str(ListenAddress()))
    try:
        return parse_listen(text)
    except ValueError as exc:
        node.problem(str(exc))
        return ListenAddress()


def _token_store(node: Node, environ: Mapping[str, str]) -> TokenStoreSettings:
    if node.missing:
        return TokenStoreSettings("file", default_token_store_path(environ), explicit=False)
    text = node.string("memory")
    if text == "memory":
        return TokenStoreSettings("memory", explicit=True)
    if not text:
        node.problem("empty; write 'memory' or a file path")
    path = _expand_home(text, environ)
    if os.path.isdir(path):
        node.problem("is a directory; name a file such as tokens.json inside it")
    return TokenStoreSettings("file", path, explicit=True)


def _limits(node: Node) -> tuple[float, float, int]:
    if not node.missing:
        node.keys(LIMIT_KEYS)
    return (
        node.child("header_timeout").number(10.0),
        node.child("keepalive_timeout").number(75.0),
        node.child("max_header_size").integer(8190, minimum=1),
    )


def _routes(node: Node) -> tuple[Route, ...]:
    if node.missing:
        node.problem("required: a mapping of route name to route (upstream, prefix, auth)")
        return ()
    entries = node.entries()
    if entries is None:
        return ()
    if not entries:
        node.problem("no routes; define at least one")
    routes: list[Route] = []
    owners: dict[str, str] = {}
    for name, child in entries:
        route = _route(name, child)
        if route is None:
            continue
        if (owner := owners.setdefault(route.prefix, name)) != name:
            child.child("prefix").problem(f"{route.prefix} is already the prefix of '{owner}'")
        routes.append(route)
    return tuple(routes)


# ---- one route -------------------------------------------------------------------------------


def _route(name: str, node: Node) -> Route | None:
    if not _ROUTE_NAME.fullmatch(name):
        node.problem("a route name may only hold letters, digits, '-' and '_'")
    if not node.keys(ROUTE_KEYS):
        return None
    upstream = _upstream(node.child("upstream"))
    prefix = _prefix(node.child("prefix"), name)
    timeout = _timeouts(node.child("timeout"))
    tls = _tls(node.child("tls"))
    forwarded = node.child("forwarded_headers").boolean(True)
    auth_node = node.child("auth")
    auth = None if auth_node.missing else parse_auth(auth_node)
    if upstream is None:
        return None
    return Route(name, upstream, prefix, timeout, tls, forwarded, auth)


def _upstream(node: Node) -> URL | None:
    text = node.string(required=True)
    if text is None:
        return None
    try:
        url = URL(text)
        url.port  # noqa: B018 - yarl checks the port only when it is read
    except ValueError:
        node.problem("not a valid URL")
        return None
    if url.scheme not in ("http", "https") or not url.host:
        node.problem("not an http(s) URL with a host, e.g. https://api.example.com")
    elif "?" in text or "#" in text:
        node.problem("must not have a query or fragment; only a base path is kept")
    elif url.user is not None or url.password is not None:
        node.problem("must not hold a user or password; put credentials under auth")
    else:
        return url.with_path(url.raw_path.rstrip("/"), encoded=True)
    return None


def _prefix(node: Node, name: str) -> str:
    text = node.string(f"/{name}")
    prefix = text.rstrip("/") or "/"
    if node.missing and not _ROUTE_NAME.fullmatch(name):
        pass  # the bad name is reported once, as itself, not again as the prefix made from it
    elif not text.startswith("/"):
        node.problem("must start with '/'")
    elif any(char in text for char in "?#") or any(char.isspace() for char in text):
        node.problem("must be a plain path, without '?', '#' or spaces")
    elif "//" in prefix:
        node.problem("must not hold an empty segment ('//')")
    elif prefix == "/-" or prefix.startswith("/-/"):
        node.problem("'/-' and paths under it are the proxy's own endpoints")
    return prefix


def _timeouts(node: Node) -> Timeouts:
    if node.missing or not node.keys(("connect", "read")):
        return Timeouts()
    default = Timeouts()
    return Timeouts(
        connect=node.child("connect").number(default.connect),
        read=node.child("read").number(default.read),
    )


def _tls(node: Node) -> TlsSettings:
    if node.missing or not node.keys(("verify", "ca_file")):
        return TlsSettings()
    ca_node = node.child("ca_file")
    ca_file = None if ca_node.missing else ca_node.string(required=True)
    if ca_file is not None:
        ca_file = _expand_home(ca_file, node.ctx.environ)
        if not (os.path.isfile(ca_file) and os.access(ca_file, os.R_OK)):
            ca_node.problem(f"{ca_file} is not a readable file")
    return TlsSettings(verify=node.child("verify").boolean(True), ca_file=ca_file)


# ---- helpers ---------------------------------------------------------------------------------


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        # "127.0.0.300" matches the host name pattern, but nobody means a DNS name by it.
        return bool(_HOST_NAME.fullmatch(host)) and not host.replace(".", "").isdigit()
    return True


def _home(environ: Mapping[str, str]) -> str:
    return environ.get("HOME") or str(Path.home())


def _expand_home(path: str, environ: Mapping[str, str]) -> str:
    if path == "~" or path.startswith("~/"):
        return _home(environ) + path[1:]
    return path


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _yaml_message(exc: yaml.YAMLError) -> str:
    # Never str(exc): PyYAML quotes the offending source line, which may hold a literal secret.
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        return f"invalid YAML at {where}: {exc.problem or 'syntax error'}"
    return "invalid YAML"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which PyYAML would silently let the last one win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[object, object]:
        seen: set[tuple[str, str]] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key '{key_node.value}'", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


# ---- reading values --------------------------------------------------------------------------

MISSING = object()  # the value of a key that is absent, as opposed to one set to null

# `$${` is a literal `${`; `${NAME}` an environment variable; `${file:/path}` a file's content.
_REFERENCE = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Text:
    """A string after `${...}` interpolation; `origin` (`literal`, `env:NAME`, ...) is printable."""

    value: str
    origin: str = "literal"


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

    def text(self, *, template: bool = False) -> Text | None:
        """The interpolated string, or None (reported) if this is not one.

        With `template`, braces in substituted values are escaped, so an environment value is
        always data and never read as a `{placeholder}`.
        """
        if isinstance(self.value, str):
            return _interpolate(self, self.value, escape=template)
        hint = " (quote it)" if isinstance(self.value, int | float | bool) else ""
        self.problem(f"expected a string, got {_kind(self.value)}{hint}")
        return None

    @overload
    def string(self, default: str) -> str: ...
    @overload
    def string(self, default: None = None, *, required: bool) -> str | None: ...
    def string(self, default: str | None = None, *, required: bool = False) -> str | None:
        if self.missing:
            if required:
                self.problem("required")
            return default
        text = self.text()
        return default if text is None else text.value

    def choice(self, options: Sequence[str], default: str | None, noun: str) -> str | None:
        """One of `options`; absent gives `default` (None: required)."""
        text = None if self.missing else self.text()
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
        text = self.text()
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


def _interpolate(node: Node, raw: str, *, escape: bool) -> Text | None:
    if "${" not in raw:
        return Text(raw)
    parts: list[str] = []
    origins: list[str] = []
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
            if escape:
                # The value ends up inside a template, where nothing marks it as a secret.
                REGISTRY.add(value)
                value = value.replace("{", "{{").replace("}", "}}")
            parts.append(value)
            origins.append(origin)
    parts.append(raw[position:])
    origin = ",".join(dict.fromkeys(origins)) or "literal"
    return Text("".join(parts), origin) if ok else None


def _resolve(node: Node, reference: str) -> tuple[str, str] | None:
    """(value, origin) of one `${...}` reference; None after recording why it has none."""
    if reference.startswith("file:"):
        path = reference.removeprefix("file:")
        try:
            content = Path(_expand_home(path, node.ctx.environ)).read_text(encoding="utf-8")
        except OSError as exc:
            node.problem(f"cannot read file {path or '(no path given)'}: {_reason(exc)}")
            return None
        except UnicodeDecodeError:
            node.problem(f"file {path} is not UTF-8 text")
            return None
        # Editors and `echo` end a file with a newline that is not part of the secret.
        if content.endswith("\n"):
            content = content[:-2] if content.endswith("\r\n") else content[:-1]
        # A file reference is how secrets are mounted (/run/secrets), so treat its content as one.
        REGISTRY.add(content)
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
