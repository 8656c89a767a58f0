"""One error tree, and one translation of upstream failures into what a client is told."""

from __future__ import annotations

import pytest
from aiohttp import ClientOSError, InvalidURL, ServerDisconnectedError
from yarl import URL

from authproxy import errors
from authproxy.auth.presets import PresetProblem
from authproxy.errors import (
    AuthproxyError,
    BodyCutShort,
    ClientBodyStalled,
    ConnectFailed,
    InvalidAnswer,
    InvalidRequestHead,
    LoginTimeout,
    LoginUnavailable,
    ProxyFailed,
    ProxyUnavailable,
    RequestBodyTimeout,
    TimedOut,
    UpstreamFailure,
    UpstreamTimeout,
    UpstreamUnavailable,
    WorkersFailed,
    upstream_error,
)
from authproxy.proxy.routes import AmbiguousPath, UnsafePath
from authproxy.upstream.pool import ForeignOriginRefused


def test_the_errors_raised_on_purpose_form_one_tree_in_one_module() -> None:
    for error in (UnsafePath, AmbiguousPath, PresetProblem, WorkersFailed, InvalidRequestHead):
        assert issubclass(error, AuthproxyError)
        assert error.__module__ == "authproxy.errors"
    internal = [kind for kind in vars(errors).values() if isinstance(kind, type)]
    failures = [kind for kind in internal if issubclass(kind, UpstreamFailure)]
    assert len(failures) == 13
    for failure in failures:
        assert str(failure()) == failure.reason


@pytest.mark.parametrize(
    ("failure", "expected", "status"),
    [
        (ConnectFailed(), UpstreamUnavailable, 502),
        (InvalidAnswer(), UpstreamUnavailable, 502),
        (BodyCutShort(), UpstreamUnavailable, 502),
        (InvalidRequestHead(), UpstreamUnavailable, 502),
        (TimedOut(), UpstreamTimeout, 504),
        (ClientBodyStalled(), RequestBodyTimeout, 408),
    ],
)
def test_a_failure_becomes_the_public_error_with_its_fixed_reason(
    failure: UpstreamFailure, expected: type[errors.UpstreamError], status: int
) -> None:
    error = upstream_error("api", failure)
    assert type(error) is expected
    assert (error.route, error.status) == ("api", status)
    if expected is not RequestBodyTimeout:
        assert error.detail == failure.reason


def test_aiohttp_errors_are_told_by_their_kind_never_by_their_text() -> None:
    secret = "https://user:hunter2@upstream.test/v1?token=s3cr3t"
    told = [
        upstream_error("api", InvalidURL(URL(secret))),
        upstream_error("api", ClientOSError(111, f"Connect call failed {secret}")),
        upstream_error("api", ForeignOriginRefused(secret)),
        upstream_error("api", ServerDisconnectedError(secret)),
    ]
    for error in told:
        assert "hunter2" not in error.detail
        assert "s3cr3t" not in error.detail
        assert isinstance(error, UpstreamUnavailable)
    assert told[3].detail == errors.Disconnected.reason


def test_logins_get_the_login_branch() -> None:
    timed_out = upstream_error("api", TimeoutError(), login=True)
    refused = upstream_error("api", ClientOSError(111, "refused"), login=True)
    assert (type(timed_out), timed_out.status) == (LoginTimeout, 504)
    assert (type(refused), refused.status) == (LoginUnavailable, 502)
    assert refused.detail == errors.ConnectionBroken.reason


def test_an_outbound_proxy_failure_names_the_proxy_and_keeps_its_kind() -> None:
    failure = ProxyFailed("proxy.corp:3128", "refused the proxy credentials (407)")
    forwarded = upstream_error("api", failure)
    login = upstream_error("api", failure, login=True)
    detail = "the outbound proxy proxy.corp:3128 refused the proxy credentials (407)"
    assert (type(forwarded), forwarded.status, forwarded.detail) == (ProxyUnavailable, 502, detail)
    assert forwarded.kind == "proxy-unavailable"
    # A login through a refusing proxy is transient (backed off), never a rejected credential.
    assert (type(login), login.status, login.detail) == (LoginUnavailable, 502, detail)
