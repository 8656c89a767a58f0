"""One error hierarchy for authproxy.

    AuthproxyError                 base; its str() never holds a secret value
    ├── ConfigError                the config cannot be used (CLI exit 2); lists every problem
    ├── StartupError               the proxy cannot start (port in use, refused bind) (exit 1)
    ├── StoreUnavailable           the shared token store does not answer (log in locally)
    └── UpstreamError              a forwarded request failed; maps to an HTTP status
        ├── UpstreamUnavailable    refused, reset or invalid answer (502)
        ├── UpstreamTimeout        no answer in time (504)
        ├── RequestBodyTimeout     the client stopped sending its body (408, connection closed)
        └── LoginFailed            the proxy could not obtain a token (502)
            ├── LoginRejected      the upstream refused the credentials (4xx); not retried soon
            └── LoginUnavailable   transient: connection error, 5xx, unusable answer
                └── LoginTimeout   the login did not finish within `auth.timeout` (504)

`server/app.py` maps `UpstreamError` to `application/problem+json`; `cli/main.py` maps the rest
to exit codes.
Fields are typed and secret-free by construction: they hold route names, statuses and key paths.
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


class StoreUnavailable(AuthproxyError):
    """The shared token store cannot be reached; the message names the server, never a secret."""


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
