"""One error tree for authproxy, in one module.

    AuthproxyError                 base; its str() never holds a secret value
    ├── ConfigError                the config cannot be used (CLI exit 2); lists every problem
    ├── PresetProblem              a preset's fields do not fit it (becomes a ConfigProblem)
    ├── StartupError               the proxy cannot start (port in use, refused bind) (exit 1)
    │   ├── AddressInUse           another program holds the port
    │   └── WorkersFailed          workers could not start, kept dying, or did not stop
    ├── StoreUnavailable           the shared token store does not answer (log in locally)
    ├── UnsafePath                 the target could step out of the route's base path (400)
    ├── AmbiguousPath              readings of the target would choose different routes (400)
    ├── UpstreamError              a forwarded request failed: what the client is told
    │   ├── UpstreamUnavailable    refused, reset or invalid answer (502)
    │   │   └── ProxyUnavailable   the outbound proxy refused or failed (502), named by host:port
    │   ├── UpstreamTimeout        no answer in time (504)
    │   ├── RequestBodyTimeout     the client stopped sending its body (408, connection closed)
    │   └── LoginFailed            the proxy could not obtain a token (502)
    │       ├── LoginRejected      the upstream refused the credentials (4xx); not retried soon
    │       └── LoginUnavailable   transient: connection error, 5xx, unusable answer
    │           └── LoginTimeout   the login did not finish within `auth.timeout` (504)
    └── UpstreamFailure            internal: an exchange with the upstream failed (upstream/)
        ├── ConnectFailed, CertificateRejected, TlsFailed       connecting
        ├── ProxyFailed                                         the outbound proxy, connecting
        ├── InvalidRequestHead, SendFailed, ClientBodyStalled   sending
        └── Disconnected, ConnectionBroken, TimedOut,           receiving
            InvalidAnswer, BodyCutShort

`UpstreamFailure` and aiohttp's client errors (logins and WebSocket upgrades still use aiohttp)
become an `UpstreamError` at one boundary, `upstream_error`: each failure has a fixed reason that
names the kind of failure only, never the upstream's bytes, addresses or URLs, which can carry
anything. `server/app.py` maps `UpstreamError` to `application/problem+json` and the path errors
to 400; `cli/main.py` maps the rest to exit codes. Fields are typed and secret-free by
construction: they hold route names, statuses and key paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class AuthproxyError(Exception):
    """Base of every error authproxy raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config, located by its key path (`routes.cosmic.upstream`)."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(AuthproxyError):
    """The config cannot be used; `problems` names every issue found in one pass."""

    def __init__(self, source: str, problems: Sequence[ConfigProblem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"{source}: {count} {noun}:\n{lines}")


class StartupError(AuthproxyError):
    """The proxy cannot start; the message says why in one line."""


class AddressInUse(StartupError):
    """Another program holds the address: the CLI says how to choose another one."""

    def __init__(self, address: object) -> None:
        super().__init__(f"cannot listen on {address}: address already in use")


class WorkersFailed(StartupError):
    """Workers could not start, kept dying, or did not stop; the CLI exits 1."""


class StoreUnavailable(AuthproxyError):
    """The shared token store cannot be reached; the message names the server, never a secret."""


class PresetProblem(AuthproxyError):
    """A preset cannot be built from the given fields; `key` names the offending field."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


class UnsafePath(AuthproxyError):
    """The target could step out of the route's base path on some upstream (`..` and its kin)."""


class AmbiguousPath(AuthproxyError):
    """Readings of the target that upstreams commonly apply would choose different routes."""


class UpstreamError(AuthproxyError):
    """A request could not be completed upstream; carries the HTTP status the client gets."""

    status = 502
    title = "Bad Gateway"
    kind = "upstream-error"
    # The client connection cannot carry another request after this answer.
    closes_connection = False

    def __init__(self, route: str, detail: str) -> None:
        self.route = route
        self.detail = detail
        super().__init__(f"route {route!r}: {detail}")


class UpstreamUnavailable(UpstreamError):
    kind = "upstream-unavailable"


class ProxyUnavailable(UpstreamUnavailable):
    """The forward proxy the route goes through refused or failed; the detail names it."""

    kind = "proxy-unavailable"


class UpstreamTimeout(UpstreamError):
    status = 504
    title = "Gateway Timeout"
    kind = "upstream-timeout"


class RequestBodyTimeout(UpstreamError):
    """The client sent no byte of its body for `limits.body_timeout` seconds (a slow-body attack
    or a dead client): the request is abandoned and its connection closed."""

    status = 408
    title = "Request Timeout"
    kind = "body-timeout"
    closes_connection = True

    def __init__(self, route: str) -> None:
        super().__init__(route, "the request body stopped arriving; nothing more was sent upstream")


class LoginFailed(UpstreamError):
    """The proxy could not log in; `upstream_status` is the login endpoint's answer, if any."""

    kind = "login-failed"

    def __init__(self, route: str, detail: str, upstream_status: int | None = None) -> None:
        self.upstream_status = upstream_status
        super().__init__(route, detail)


class LoginRejected(LoginFailed):
    """The upstream refused the credentials: retrying would only lock the account."""

    kind = "login-rejected"


class LoginUnavailable(LoginFailed):
    """A transient failure: retried with exponential backoff."""

    kind = "login-unavailable"


class LoginTimeout(LoginUnavailable):
    """The login did not finish within the route's `auth.timeout`: transient, answered 504."""

    status = 504
    title = "Gateway Timeout"
    kind = "login-timeout"


# ---- the internal branch: what can go wrong talking to an upstream ------------------------------


class UpstreamFailure(AuthproxyError):
    """The exchange with the upstream failed; `reason` is safe to show a client."""

    reason = "the upstream request failed"

    def __init__(self) -> None:
        super().__init__(self.reason)


class ConnectFailed(UpstreamFailure):
    reason = "the upstream refused the connection or could not be reached"


class ProxyFailed(UpstreamFailure):
    """The outbound proxy refused the connection, the tunnel or its credentials, or failed.

    Its reason names the proxy by `host:port` (never its credentials), so that a user looks at the
    proxy, not at an upstream the request never reached.
    """

    reason = "the outbound proxy failed"

    def __init__(self, proxy: str = "", what: str = "failed") -> None:
        self.reason = (
            f"the outbound proxy {proxy} {what}" if proxy else f"the outbound proxy {what}"
        )
        super().__init__()


class CertificateRejected(UpstreamFailure):
    reason = "the upstream's TLS certificate was not trusted"


class TlsFailed(UpstreamFailure):
    reason = "the TLS handshake with the upstream failed"


class InvalidRequestHead(UpstreamFailure):
    """A header name or value would break the request's framing (a control character)."""

    reason = "a request header holds a control character; nothing was sent"


class SendFailed(UpstreamFailure):
    reason = "the request body could not be sent to the upstream"


class ClientBodyStalled(UpstreamFailure):
    """The client stopped sending the body being streamed upstream (`limits.body_timeout`)."""

    reason = "the client stopped sending the request body"


class Disconnected(UpstreamFailure):
    reason = "the upstream closed the connection without answering"


class ConnectionBroken(UpstreamFailure):
    reason = "the connection to the upstream failed"


class TimedOut(UpstreamFailure):
    """Connecting, or a wait for the answer's bytes, took longer than the route allows."""

    reason = "the upstream did not answer in time"


class InvalidAnswer(UpstreamFailure):
    """The upstream's bytes cannot be read as an HTTP/1.x answer (upstream/answer.py)."""

    reason = "the upstream sent an invalid HTTP answer"


class BodyCutShort(UpstreamFailure):
    reason = "the upstream's answer body was cut short"


# aiohttp's client errors by class name (errors.py imports no aiohttp), told with the same texts
# as our own failures.
_AIOHTTP_REASONS = {
    "ClientConnectorError": ConnectFailed.reason,
    "ClientConnectorCertificateError": CertificateRejected.reason,
    "ClientConnectorSSLError": TlsFailed.reason,
    "ServerDisconnectedError": Disconnected.reason,
    "ClientOSError": ConnectionBroken.reason,
    "ClientResponseError": InvalidAnswer.reason,
    "ClientPayloadError": BodyCutShort.reason,
    "InvalidURL": "the upstream URL is invalid",
    "ForeignOriginRefused": "a request to another origin than the upstream's was refused",
    "WSServerHandshakeError": "the upstream refused the WebSocket upgrade",
}


def failure_reason(error: BaseException) -> str:
    """A short, secret-free reason: a failure's own, or by the error's class, never its text
    (an aiohttp error's text may hold a URL)."""
    if isinstance(error, UpstreamFailure):
        return error.reason
    if isinstance(error, TimeoutError):
        return TimedOut.reason
    name = type(error).__name__
    reason = _AIOHTTP_REASONS.get(name, f"the upstream request failed ({name})")
    status = getattr(error, "status", None)
    if name == "WSServerHandshakeError" and isinstance(status, int):
        reason += f" (status {status})"
    return reason


def upstream_error(route: str, error: BaseException, *, login: bool = False) -> UpstreamError:
    """What the client is told of a failed exchange with the upstream: an `UpstreamFailure`, an
    aiohttp client error or a timeout becomes a 504 when it timed out, a 408 when the client's
    own body stalled, else a 502. `login`: the exchange was a login (LoginFailed's branch)."""
    if isinstance(error, ClientBodyStalled):
        return RequestBodyTimeout(route)
    if isinstance(error, ProxyFailed) and not login:
        return ProxyUnavailable(route, error.reason)
    timed_out = isinstance(error, TimedOut | TimeoutError)
    reason = failure_reason(error)
    if login:
        return LoginTimeout(route, reason) if timed_out else LoginUnavailable(route, reason)
    return UpstreamTimeout(route, reason) if timed_out else UpstreamUnavailable(route, reason)
