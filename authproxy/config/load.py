"""YAML -> frozen `Settings`, reporting every problem in one pass, each with its key path.

`load_settings` reads the file (YAML that refuses duplicate keys, with `${...}` references kept as
written, see `config/reader.py`) and `parse_settings` walks the data: the top-level keys, `listen`,
`token_store` and `allowed_hosts` here, each other block in its own module (`limits.py`,
`routes_block.py`, `auth_block.py`, `gateway_block.py`). Each reader takes a `Node` (a value, its
dotted key path and the shared problem list, see `config/node.py`), records what is wrong, and
carries on, so one run lists everything.

Problem messages name keys, environment variables and files. They never hold a value that came from
the environment or a file, and this module prints nothing.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from authproxy.config.gateway_block import (
    parse_clients,
    parse_store_keys,
    redis_store,
    startup_problems,
)
from authproxy.config.interpolate import expand_home, home, reason
from authproxy.config.limits import LIMIT_KEYS, UPSTREAM_KEYS, parse_limits, parse_upstream_block
from authproxy.config.node import Context, Node
from authproxy.config.outbound import apply_proxies
from authproxy.config.reader import read_yaml
from authproxy.config.routes_block import ROUTE_KEYS, parse_routes
from authproxy.config.serving import parse_listen_mode, parse_log_format, unix_listen
from authproxy.errors import ConfigError, ConfigProblem
from authproxy.secrets import Secret
from authproxy.settings import ListenAddress, Settings, TokenStoreSettings

TOP_KEYS = (
    "listen",
    "token_store",
    "token_store_key",
    "shutdown_grace",
    "limits",
    "routes",
    "clients",
    "allow_unauthenticated",
    "allow_plaintext_store",
    "allowed_hosts",
    "upstream",
    "log_format",
    "listen_mode",
)

# RFC 1123 host names; a name of digits and dots only must also parse as IPv4 (see parse_listen).
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")


def load_settings(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and parse the config file at `path`; raises `ConfigError` listing every problem."""
    source = os.fspath(path)
    data = read_document(source)
    return parse_settings(data, source=source, environ=os.environ if environ is None else environ)


def read_document(source: str) -> object:
    """The config file's YAML as data, `${...}` kept as written; raises `ConfigError`."""
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem("", f"cannot read the file: {reason(exc)}")
        raise ConfigError(source, [problem]) from None
    except UnicodeDecodeError:
        raise ConfigError(source, [ConfigProblem("", "the file is not UTF-8 text")]) from None
    return read_yaml(text, source)


def listen_of(data: object, *, source: str, environ: Mapping[str, str]) -> ListenAddress:
    """Only the `listen` address of a config: enough to ask the proxy running with it, without
    the credentials that the rest of the file may need from the environment."""
    ctx = Context(environ)
    listen = _listen(Node(data, "", ctx).child("listen"))
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    return listen


def parse_settings(data: object, *, source: str, environ: Mapping[str, str]) -> Settings:
    """Turn parsed YAML into `Settings`; raises `ConfigError(source, problems)` naming them all."""
    if not isinstance(data, dict):
        message = "expected a mapping of settings with at least 'routes'"
        raise ConfigError(source, [ConfigProblem("", message)])
    ctx = Context(environ)
    root = Node(data, "", ctx)
    root.keys(TOP_KEYS, _misplaced_at_top())
    listen = _listen(root.child("listen"))
    keys = parse_store_keys(root.child("token_store_key"))
    token_store = _token_store(root.child("token_store"), environ, keys[0] if keys else None)
    token_store = replace(token_store, previous_keys=keys[1:])
    grace = root.child("shutdown_grace").number(10.0)
    limits = parse_limits(root.child("limits"))
    busy_poll_us = parse_upstream_block(root.child("upstream"))
    routes = apply_proxies(parse_routes(root.child("routes")), root.child("routes"))
    clients = parse_clients(root.child("clients"), {route.name for route in routes})
    open_door = root.child("allow_unauthenticated").boolean(False)
    plaintext = root.child("allow_plaintext_store").boolean(False)
    allowed_hosts = _allowed_hosts(root.child("allowed_hosts"))
    log_format = parse_log_format(root.child("log_format"))
    listen_mode = parse_listen_mode(root.child("listen_mode"))
    settings = Settings(
        listen=listen,
        routes=routes,
        token_store=token_store,
        shutdown_grace=grace,
        **limits,
        busy_poll_us=busy_poll_us,
        clients=clients,
        allow_unauthenticated=open_door,
        allow_plaintext_store=plaintext,
        allowed_hosts=allowed_hosts,
        log_format=log_format,
        listen_mode=listen_mode,
        source=source,
    )
    ctx.problems.extend(startup_problems(settings, listen))
    if ctx.problems:
        raise ConfigError(source, ctx.problems)
    return settings


def _misplaced_at_top() -> dict[str, str]:
    """Keys of a block written at the top level, and the block each belongs in."""
    where = dict.fromkeys(LIMIT_KEYS, "limits") | dict.fromkeys(UPSTREAM_KEYS, "upstream")
    return where | dict.fromkeys(set(ROUTE_KEYS) - set(TOP_KEYS), "routes.<name>")


def parse_listen(text: str) -> ListenAddress:
    """Parse `HOST:PORT` (`127.0.0.1:8080`, `[::1]:8080`, `localhost:9000`); port 0 picks one.

    A port alone (`9000`) means loopback, `127.0.0.1:9000`: the safe address, and what someone
    who only wants another port means.
    `unix:/path` is a Unix socket.
    """
    if text.startswith("unix:"):
        return unix_listen(text.removeprefix("unix:"))
    if text.isascii() and text.isdigit():
        text = f"{ListenAddress().host}:{text}"
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
        state = os.path.join(home(environ), ".local", "state")
    return os.path.join(state, "authproxy", "tokens.json")


# ---- top-level blocks ------------------------------------------------------------------------


def _listen(node: Node) -> ListenAddress:
    if isinstance(node.value, int) and not isinstance(node.value, bool):
        node = Node(str(node.value), node.path, node.ctx)  # `listen: 9000`, a port alone
    text = node.string(str(ListenAddress()), secret=False)
    try:
        return parse_listen(text)
    except ValueError as exc:
        node.problem(str(exc))
        return ListenAddress()


def _token_store(node: Node, environ: Mapping[str, str], key: Secret | None) -> TokenStoreSettings:
    if node.missing:
        path = default_token_store_path(environ)
        return TokenStoreSettings("file", path, explicit=False, key=key)
    if (redis := redis_store(node, key)) is not None:
        return redis
    text = node.string("memory", secret=False)  # a file path; a Redis URL is read above
    if text == "memory":
        return TokenStoreSettings("memory", explicit=True, key=key)
    if not text:
        node.problem("empty; write 'memory' or a file path")
    path = expand_home(text, environ)
    if os.path.isdir(path):
        node.problem("is a directory; name a file such as tokens.json inside it")
    return TokenStoreSettings("file", path, explicit=True, key=key)


def _allowed_hosts(node: Node) -> tuple[str, ...]:
    """`allowed_hosts`: Host header values (`name`, `name:port`, `[::1]:port`) accepted without
    clients, besides the listen address and the loopback names."""
    hosts: list[str] = []
    for item in [] if node.missing else node.items() or []:
        text = item.string(required=True, secret=False)
        if text is None:
            continue
        if _is_host_header(text):
            hosts.append(text.lower())
        else:
            item.problem("expected a host name or address, optionally with :PORT")
    return tuple(dict.fromkeys(hosts))


def _is_host_header(text: str) -> bool:
    if text.startswith("[") and text.endswith("]"):
        return _is_ipv6(text[1:-1])
    if ":" not in text:
        return _is_host(text)
    try:
        parse_listen(text)
    except ValueError:
        return False
    return True


# ---- helpers ---------------------------------------------------------------------------------


def _is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def _is_host(host: str) -> bool:
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        # "127.0.0.300" matches the host name pattern, but nobody means a DNS name by it.
        return bool(_HOST_NAME.fullmatch(host)) and not host.replace(".", "").isdigit()
    return True
