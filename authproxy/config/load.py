"""YAML -> frozen `Settings`, reporting every problem in one pass, each with its key path.

`load_settings` reads the file (YAML that refuses duplicate keys, with `${...}` references kept as
written, see `config/reader.py`) and `parse_settings` walks the data: the top-level keys and
`token_store` here, each other block in its own module (`addresses.py` for `listen` and
`allowed_hosts`, `limits.py`, `routes_block.py`, `auth_block.py`, `gateway_block.py`). Each reader
takes a `Node` (a value, its dotted key path and the shared problem list, see `config/node.py`),
records what is wrong, and carries on, so one run lists everything.

Problem messages name keys, environment variables and files. They never hold a value that came from
the environment or a file, and this module prints nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

from authproxy.config.addresses import parse_allowed_hosts, parse_listen_node
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
from authproxy.config.serving import parse_listen_mode, parse_log_format
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
    listen = parse_listen_node(Node(data, "", ctx).child("listen"))
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
    listen = parse_listen_node(root.child("listen"))
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
    allowed_hosts = parse_allowed_hosts(root.child("allowed_hosts"))
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


def default_token_store_path(environ: Mapping[str, str]) -> str:
    """`$XDG_STATE_HOME/authproxy/tokens.json`, else `~/.local/state/authproxy/tokens.json`."""
    # The XDG base directory spec says to ignore a relative XDG_STATE_HOME.
    state = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state):
        state = os.path.join(home(environ), ".local", "state")
    return os.path.join(state, "authproxy", "tokens.json")


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
