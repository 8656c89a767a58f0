"""The config as frozen, typed objects: built once at start by `config/load.py`, then only read.

Nothing here does I/O or reads YAML. Auth flows are described as data (`AuthSpec`), whether they
come from a preset or from a route's own YAML; the engine in `auth/` interprets them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from yarl import URL

from authproxy.http_syntax import host_port
from authproxy.secrets import Secret

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080

EMPTY: Mapping[str, str] = MappingProxyType({})
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


# ---- auth flows as data ----------------------------------------------------------------------

BodyEncoding = Literal["json", "form"]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """An HTTP call the engine makes for a login or a refresh.

    `path` is an absolute path on the upstream's origin (`/v1/authenticate`), or an absolute
    http(s) URL on any origin: an identity provider's token endpoint (`auth/endpoints.py`).
    `body` maps each body key to a template such as "{password}" or "{password|sha1}"; a key
    whose template names a value that is not available (an optional credential) is left out of
    the body. `basic_auth` holds the templates of a client id and secret sent as
    `Authorization: Basic` the way RFC 6749 §2.3.1 asks; it is left out when either names an
    absent value (a public client has no secret).
    """

    method: str
    path: str
    encoding: BodyEncoding = "json"
    body: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    basic_auth: tuple[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Capture:
    """A value taken from a login/refresh answer: a JSON body path or a response header.

    `keys` are alternatives tried in order (crux answers `auth_token`, DRF's stock view `token`).
    Dotted keys walk into nested objects (`data.token`).
    """

    name: str
    source: Literal["body", "header"]
    keys: tuple[str, ...]
    required: bool = True


ExpirySource = Literal["jwt_exp", "field", "header", "ttl", "none"]


@dataclass(frozen=True, slots=True)
class ExpirySpec:
    """How long a token lives.

    jwt_exp: the `exp` claim of the captured `token` (signature not verified).
    field:   a seconds-from-now number at body path `key` (`expire_in`).
    header:  a POSIX-seconds response header named `key` (`expiry`).
    ttl:     a fixed `seconds` from the moment of login.
    none:    unknown; the token is valid until the upstream says otherwise.
    """

    source: ExpirySource
    key: str | None = None
    seconds: float | None = None


@dataclass(frozen=True, slots=True)
class RefreshSpec:
    """How to renew without the password: templates may name captured values ("{refresh_token}")."""

    request: RequestSpec
    requires: str = "refresh_token"


@dataclass(frozen=True, slots=True)
class InjectSpec:
    """Headers put on every forwarded request. Templates name captured values and credentials.

    `headers` replace whatever the client sent; `defaults` are set only when the client sent none.
    """

    headers: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    defaults: Mapping[str, str] = field(default_factory=lambda: EMPTY)


@dataclass(frozen=True, slots=True)
class AdoptSpec:
    """Tokens an upstream hands out on ordinary responses (devise_token_auth rotation).

    When a response carries a non-empty `trigger` header, each capture name in `headers` takes the
    value of its header; blank values are ignored. Expiry is read again with the route's ExpirySpec.
    """

    trigger: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class AuthSpec:
    """One route's complete auth flow. Presets build these; custom YAML flows too.

    `login` None means static credentials: inject templates are filled from `credentials` alone.
    """

    preset: str | None
    credentials: Mapping[str, Secret]
    login: RequestSpec | None
    captures: tuple[Capture, ...]
    expiry: ExpirySpec
    inject: InjectSpec
    refresh: RefreshSpec | None = None
    adopt: AdoptSpec | None = None
    strip_response_headers: tuple[str, ...] = ()
    invalid_statuses: frozenset[int] = frozenset({401})
    renew_at: float = 0.8
    relogin_after_rejection: float = 300.0
    warm: bool = False
    # Seconds one login (or refresh) may take, from connect to the parsed answer.
    timeout: float = 30.0
    # The token type (RFC 6749 §7.1) the inject headers are written for, compared without case
    # with a login answer's `token_type`: a token of another type would be refused where it is
    # sent (a DPoP token needs a proof with every request, RFC 9449). None: not checked.
    token_type: str | None = None

    @property
    def is_static(self) -> bool:
        return self.login is None


# ---- routes and settings ---------------------------------------------------------------------


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
