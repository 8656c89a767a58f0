"""The team-gateway part of the config: `clients`, the shared token store, and the start-up rules.

A proxy holding upstream credentials must never silently become an open door: without a `clients`
section it may only listen on loopback, unless the config says `allow_unauthenticated: true`.
`startup_problems` is the one place these rules are checked: when a config is read, when the
proxy binds (after `--listen`), and when SIGHUP brings a new config.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import re

from authproxy.config.interpolate import register_beyond_origin
from authproxy.config.node import Node, did_you_mean
from authproxy.crypto import TokenCipher
from authproxy.errors import ConfigProblem, StartupError
from authproxy.secrets import Secret
from authproxy.settings import ClientSpec, ListenAddress, RateLimit, Settings, TokenStoreSettings

CLIENT_KEYS = ("key", "key_sha256", "routes", "rate_limit", "admin")
RATE_KEYS = ("rate", "burst")
_CLIENT_NAME = re.compile(r"[A-Za-z0-9_.@-]+")
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")

PUBLIC_BIND_PROBLEM = (
    "a non-loopback address without a 'clients' section would let anyone who can reach it act "
    "with the upstream credentials; add 'clients' (see README, Team gateway) or set "
    "'allow_unauthenticated: true'"
)


PLAINTEXT_STORE_PROBLEM = (
    "a Redis token store without 'token_store_key' holds the upstream tokens in plain text for "
    "anyone who can read Redis; set 'token_store_key' (authproxy keygen), or "
    "'allow_plaintext_store: true' to accept that"
)


def plaintext_store_refused(
    store: TokenStoreSettings, clients: tuple[ClientSpec, ...], allow_plaintext: bool
) -> bool:
    """A team gateway (clients configured) must not keep tokens readable in a shared Redis."""
    return store.kind == "redis" and store.key is None and bool(clients) and not allow_plaintext


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; everything else (0.0.0.0 included) is reachable."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def public_bind_refused(
    listen: ListenAddress, clients: tuple[ClientSpec, ...], allow_unauthenticated: bool
) -> bool:
    if listen.path is not None:
        return False  # a Unix socket: its file permissions (listen_mode) are the access control
    return not clients and not allow_unauthenticated and not is_loopback(listen.host)


def startup_problems(settings: Settings, bound: ListenAddress) -> list[ConfigProblem]:
    """Every start-up rule `settings` breaks when serving on `bound`, the address actually
    listened on (`--listen` and a running proxy's socket win over the config's `listen`)."""
    problems: list[ConfigProblem] = []
    if public_bind_refused(bound, settings.clients, settings.allow_unauthenticated):
        problems.append(ConfigProblem("listen", PUBLIC_BIND_PROBLEM))
    store, plaintext = settings.token_store, settings.allow_plaintext_store
    if plaintext_store_refused(store, settings.clients, plaintext):
        problems.append(ConfigProblem("token_store", PLAINTEXT_STORE_PROBLEM))
    return problems


def refuse_unsafe_start(settings: Settings, bound: ListenAddress) -> None:
    """Raise StartupError naming every start-up rule `settings` breaks on `bound`."""
    if problems := startup_problems(settings, bound):
        reasons = "; ".join(str(problem) for problem in problems)
        raise StartupError(f"refusing to listen on {bound}: {reasons}")


def parse_clients(node: Node, route_names: set[str]) -> tuple[ClientSpec, ...]:
    clients: list[ClientSpec] = []
    for name, child in node.pairs():
        if not _CLIENT_NAME.fullmatch(name):
            child.problem("a client name may hold letters, digits and '_', '-', '.', '@'")
        if not child.keys(CLIENT_KEYS):
            continue
        digest = _key_digest(child)
        routes = _client_routes(child.child("routes"), route_names)
        rate = _rate_limit(child.child("rate_limit"))
        admin = child.child("admin").boolean(False)
        if digest is not None:
            clients.append(ClientSpec(name, digest, routes, rate, admin))
    if not node.missing and not clients and not node.ctx.problems:
        node.problem("empty; define at least one client, or remove the section")
    return tuple(clients)


def _key_digest(node: Node) -> bytes | None:
    key, digest = node.child("key"), node.child("key_sha256")
    if key.missing == digest.missing:
        node.problem("set exactly one of 'key' (the key itself) and 'key_sha256' (its digest)")
        return None
    if not key.missing:
        text = key.text()
        if text is None:
            return None
        if len(text.value) < 16:
            key.problem("too short to be a key: use at least 16 characters (authproxy keygen)")
            return None
        Secret(text.value, text.origin)  # registers it, so no log line can ever show it
        return hashlib.sha256(text.value.encode()).digest()
    hex_text = digest.string(required=True)
    if hex_text is None:
        return None
    if not _SHA256_HEX.fullmatch(hex_text):
        digest.problem("expected 64 hex digits: the SHA-256 of the key (sha256sum)")
        return None
    return bytes.fromhex(hex_text)


def _client_routes(node: Node, route_names: set[str]) -> frozenset[str] | None:
    if node.missing:
        return None
    names: set[str] = set()
    for item in node.items() or ():
        name = item.string(required=True, secret=False)  # a route name
        if name is None:
            continue
        if name not in route_names:
            hint = did_you_mean(name, route_names)
            item.problem(f"no route named {name!r}" + (f"; {hint}" if hint else ""))
        names.add(name)
    return frozenset(names)


def _rate_limit(node: Node) -> RateLimit | None:
    if node.missing or not node.keys(RATE_KEYS):
        return None
    rate = node.child("rate").number(0.0, minimum=0.0, inclusive=False)
    burst_node = node.child("burst")
    burst = burst_node.integer(max(1, math.ceil(rate)), minimum=1)
    if node.child("rate").missing:
        node.child("rate").problem("required: the requests per second this client may make")
        return None
    return RateLimit(rate, burst)


def parse_store_keys(node: Node) -> tuple[Secret, ...]:
    """`token_store_key`: a Fernet key (authproxy keygen) that encrypts tokens at rest, or a
    list of them for a rotation, `[new, old, ...]`: written under the first, read under any."""
    if node.missing:
        return ()
    if not isinstance(node.value, list):
        key = _store_key(node)
        return () if key is None else (key,)
    items = node.items() or []
    if not items:
        node.problem("empty; give one key, or a list with the new key first")
    keys: list[Secret] = []
    for item in items:
        key = _store_key(item)
        if key is not None and key in keys:
            item.problem("listed twice; each key once, the new one first")
        elif key is not None:
            keys.append(key)
    return tuple(keys) if len(keys) == len(items) else ()


def _store_key(node: Node) -> Secret | None:
    text = node.text()
    if text is None:
        return None
    try:
        TokenCipher.from_key(text.value)
    except ValueError as error:
        node.problem(f"{error}; make one with `authproxy keygen`")
        return None
    return Secret(text.value, text.origin)


def redis_store(node: Node, key: Secret | None) -> TokenStoreSettings | None:
    """`token_store: redis://...` (or rediss://) as settings; None when it is not a Redis URL."""
    text = node.text(secret=False)  # a file path is not a secret; a Redis URL is, below
    if text is None or not text.value.startswith(("redis://", "rediss://")):
        return None
    register_beyond_origin(text, text.value)
    # The URL may carry a password: it is kept as a Secret and never printed.
    return TokenStoreSettings("redis", explicit=True, url=Secret(text.value, text.origin), key=key)
