"""The config as frozen, typed objects: built once at start by `config/load.py`, then only read.

Nothing here does I/O or reads YAML. A route's auth flow is data too, `AuthSpec` in the sibling
leaf `auth_spec.py`, whether it comes from a preset or from the route's own YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from yarl import URL

from authproxy.auth_spec import AuthSpec
from authproxy.http_syntax import host_port
from authproxy.secrets import Secret

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

EMPTY_PROXIES: Mapping[str, OutboundProxy | None] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """`HOST:PORT`, or with `path` a Unix socket (`unix:/run/authproxy/ap.sock`): then `host`
    is `localhost` and `port` 0, what the rules about names and ports see of it."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    path: str | None = None

    def __str__(self) -> str:
        return f"unix:{self.path}" if self.path is not None else host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds: `connect` bounds opening a connection, `read` each wait for bytes of the answer."""

    connect: float = 5.0
    read: float = 60.0


@dataclass(frozen=True, slots=True)
class TlsSettings:
    verify: bool = True
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class CorsSettings:
    """Browser origins allowed to call a route (CORS is opt-in, per route).

    `origins` are exact origins (`https://app.example.com`, `http://localhost:3000`); the proxy
    answers their preflights itself and sets `Access-Control-Allow-Origin` on their answers.
    """

    origins: tuple[str, ...]
    methods: tuple[str, ...] = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
    headers: tuple[str, ...] = ()
    max_age: int = 600


@dataclass(frozen=True, slots=True)
class OutboundProxy:
    """A forward proxy that an upstream's traffic goes through: `http://[user:pass@]host:port`.

    `str()` is `host:port`, the name errors and logs give it; the credentials are `Secret`s.
    `source` says where it was set (`route`, `env:HTTPS_PROXY`), which is safe to print.
    """

    host: str
    port: int
    username: Secret | None = None
    password: Secret | None = None
    source: str = "route"

    def __str__(self) -> str:
        return host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class HeaderEdits:
    """What a route does to the headers of one direction: `assign` sets each (name, value),
    replacing what was there; `remove` (lower-case names) drops every occurrence."""

    assign: tuple[tuple[str, str], ...] = ()
    remove: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class HeaderRules:
    """A route's `headers`: edits to the request sent upstream and to the answer sent back.
    The auth engine's own headers are set after `request`, so they win over it."""

    request: HeaderEdits = field(default_factory=HeaderEdits)
    response: HeaderEdits = field(default_factory=HeaderEdits)


@dataclass(frozen=True, slots=True)
class Route:
    """`/<prefix>/<rest>` is forwarded to `<upstream>/<rest>`; the upstream's base path is kept."""

    name: str
    upstream: URL
    prefix: str
    timeout: Timeouts = field(default_factory=Timeouts)
    tls: TlsSettings = field(default_factory=TlsSettings)
    forwarded_headers: bool = True
    auth: AuthSpec | None = None
    cors: CorsSettings | None = None
    # The forward proxy the upstream is reached through (the route's `proxy`, else HTTPS_PROXY,
    # HTTP_PROXY and NO_PROXY, decided by config/outbound.py); None: directly.
    proxy: OutboundProxy | None = None
    # The same decision for each other origin the route logs in at (an identity provider's
    # token URL), by that origin's string form.
    login_proxies: Mapping[str, OutboundProxy | None] = field(default_factory=lambda: EMPTY_PROXIES)
    headers: HeaderRules | None = None


TokenStoreKind = Literal["memory", "file", "redis"]


@dataclass(frozen=True, slots=True)
class TokenStoreSettings:
    """Where tokens rest: `memory`, a `file` at `path`, or a shared `redis` server at `url`.

    `explicit` is False when the default file was chosen for the user. `key` (a Fernet key)
    encrypts tokens at rest in the file and in Redis; `previous_keys` (a rotation,
    `token_store_key: [new, old, ...]`) still read what older keys wrote.
    """

    kind: TokenStoreKind
    path: str | None = None
    explicit: bool = False
    url: Secret | None = None  # may carry a password: masked like every other secret
    key: Secret | None = None
    previous_keys: tuple[Secret, ...] = ()

    @property
    def keys(self) -> tuple[Secret, ...]:
        """Every key, the one that writes first; () without encryption."""
        return () if self.key is None else (self.key, *self.previous_keys)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A token bucket: `rate` requests per second on average, bursts of up to `burst`."""

    rate: float
    burst: int


@dataclass(frozen=True, slots=True)
class ClientSpec:
    """A caller of the proxy, known by the SHA-256 of its key.

    `routes` None means every route. Only the digest is kept, so a config dump or a memory
    inspection never shows a usable key.
    """

    name: str
    key_sha256: bytes
    routes: frozenset[str] | None = None
    rate_limit: RateLimit | None = None
    admin: bool = False  # may read /-/status and /-/metrics


@dataclass(frozen=True, slots=True)
class Settings:
    listen: ListenAddress
    routes: tuple[Route, ...]
    token_store: TokenStoreSettings = field(
        default_factory=lambda: TokenStoreSettings(kind="memory")
    )
    shutdown_grace: float = 10.0
    header_timeout: float = 10.0
    keepalive_timeout: float = 75.0
    max_header_size: int = 8190
    body_timeout: float = 30.0
    max_connections: int = 1024
    replay_buffer_total: int = 64 * 1024 * 1024
    websocket_message: int = 4 * 1024 * 1024
    # Microseconds the loop keeps polling after an upstream exchange (upstream/busy_poll.py).
    busy_poll_us: int = 0
    clients: tuple[ClientSpec, ...] = ()
    allow_unauthenticated: bool = False
    allow_plaintext_store: bool = False
    # Host header values accepted without clients (besides the listen address and loopback names).
    allowed_hosts: tuple[str, ...] = ()
    # The access line: "events" (like every other log event) or "clf" (combined log format).
    log_format: str = "events"
    # File mode of a Unix socket listener (`listen: unix:/path`).
    listen_mode: int = 0o660
    source: str = "<config>"

    def route(self, name: str) -> Route:
        for route in self.routes:
            if route.name == name:
                return route
        raise KeyError(name)
