"""A route's auth flow as frozen data: how it logs in, what it captures, how long a token lives,
how it renews and what it injects.

Presets (`auth/presets/`) and custom YAML flows (`config/custom_flow.py`) both build an `AuthSpec`;
the engine in `auth/` interprets it. Like `settings.py`, which holds it as `Route.auth`, this is a
leaf: no I/O, no YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from authproxy.secrets import Secret

EMPTY: Mapping[str, str] = MappingProxyType({})

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
