"""The sans-io login/refresh/adopt engine, driven by hand: no event loop, no socket."""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import parse_qs

import jwt
import pytest

from authproxy.auth.flow import (
    Flow,
    HttpCall,
    HttpReply,
    adopt_from_response,
    can_refresh,
    login_flow,
    refresh_flow,
    static_grant,
)
from authproxy.auth.grant import Grant
from authproxy.auth.presets import PRESETS
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.errors import LoginRejected, LoginUnavailable
from authproxy.secrets import REGISTRY, Secret

NOW = 1_700_000_000.0
PASSWORD = "pw-Tr0ub4dor-flow"
ROUTE = "api"


def make_jwt(exp: float, sub: str = "user") -> str:
    return jwt.encode({"sub": sub, "exp": int(exp)}, "test-signing-key-of-32-bytes-min!", "HS256")


def build(preset: str, options: Mapping[str, str] | None = None, **secrets: str) -> AuthSpec:
    return PRESETS[preset].build({k: Secret(v) for k, v in secrets.items()}, options or {})


def reply(
    status: int = 200, body: object = None, headers: Mapping[str, str] | None = None
) -> HttpReply:
    raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
    return HttpReply(status, dict(headers or {}), raw)


def finish(flow: Flow, answer: HttpReply) -> Grant:
    with pytest.raises(StopIteration) as stop:
        flow.send(answer)
    grant: Grant = stop.value.value
    return grant


def login(spec: AuthSpec, answer: HttpReply) -> tuple[HttpCall, Grant]:
    flow = login_flow(spec, ROUTE, NOW)
    call = next(flow)
    return call, finish(flow, answer)


def fail(spec: AuthSpec, answer: HttpReply) -> LoginRejected | LoginUnavailable:
    flow = login_flow(spec, ROUTE, NOW)
    next(flow)
    with pytest.raises((LoginRejected, LoginUnavailable)) as caught:
        flow.send(answer)
    assert isinstance(caught.value, LoginRejected | LoginUnavailable)
    return caught.value


COSMIC = build("cosmic", email="me@example.com", password=PASSWORD)


def test_login_renders_a_json_call_and_captures_the_token() -> None:
    token = make_jwt(NOW + 3600)
    call, grant = login(COSMIC, reply(200, {"success": True, "token": token}))
    assert (call.method, call.path) == ("POST", "/v1/authenticate")
    assert call.headers == {"Content-Type": "application/json"}
    assert json.loads(call.body) == {"email": "me@example.com", "password": PASSWORD}
    assert grant == Grant({"token": token}, NOW + 3600, NOW)
    assert token in REGISTRY  # so the log redaction masks it


def test_form_encoding_and_dotted_capture() -> None:
    spec = AuthSpec(
        preset=None,
        credentials={"user": Secret("form-user"), "pass": Secret(PASSWORD)},
        login=RequestSpec("POST", "/token", "form", {"u": "{user}", "p": "{pass}"}),
        captures=(Capture("token", "body", ("data.access",)),),
        expiry=ExpirySpec("ttl", seconds=60),
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
    )
    call, grant = login(spec, reply(200, {"data": {"access": "tok-dotted-123"}}))
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert parse_qs(call.body.decode()) == {"u": ["form-user"], "p": [PASSWORD]}
    assert grant.values == {"token": "tok-dotted-123"}
    assert grant.expires_at == NOW + 60


def test_absent_optional_credential_is_left_out_of_the_body() -> None:
    call, grant = login(
        build("coco", password=PASSWORD),
        reply(200, {"access_token": "coco-tok-1", "expire_in": 86400, "status": "ok"}),
    )
    assert json.loads(call.body) == {"password": PASSWORD}
    assert grant.expires_at == NOW + 86400


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"auth_token": "crux-primary", "token": "crux-fallback"}, "crux-primary"),
        ({"token": "crux-fallback"}, "crux-fallback"),
        ({"auth_token": "", "token": "crux-fallback"}, "crux-fallback"),
    ],
)
def test_capture_alternatives_are_tried_in_order(body: object, expected: str) -> None:
    _, grant = login(build("crux", username="u", password=PASSWORD), reply(200, body))
    assert grant.values["token"] == expected
    assert grant.expires_at is None  # crux: valid until a 401


def test_header_captures_and_header_expiry() -> None:
    spec = build("cucumberstudio", email="me@example.com", password=PASSWORD)
    headers = {
        "access-token": "sUaWO8m8v5Lkv5pxnLCXzA",
        "client": "AfLp4PsN9Zieq",
        "uid": "me@example.com",
        "expiry": "1486047985",
        "token-type": "Bearer",
    }
    _, grant = login(spec, reply(200, b"<not json>", headers))
    assert grant.values == {
        "token": "sUaWO8m8v5Lkv5pxnLCXzA",
        "client": "AfLp4PsN9Zieq",
        "uid": "me@example.com",
    }
    assert grant.expires_at == 1486047985.0


def test_header_capture_tolerates_mixed_case_names() -> None:
    spec = build("cucumberstudio", email="me@example.com", password=PASSWORD)
    _, grant = login(
        spec,
        reply(200, None, {"Access-Token": "tok-mixed", "Client": "c1", "UID": "me@example.com"}),
    )
    assert grant.values["token"] == "tok-mixed"


def test_missing_token_is_unavailable_and_quotes_no_body() -> None:
    body = {"message": "body-text-must-not-leak", "other": PASSWORD}
    error = fail(COSMIC, reply(200, body))
    assert isinstance(error, LoginUnavailable)
    assert error.upstream_status == 200
    assert "'token'" in str(error)
    assert "body-text-must-not-leak" not in str(error) + repr(error)
    assert PASSWORD not in str(error) + repr(error)


def test_answer_that_is_not_json_is_unavailable() -> None:
    error = fail(COSMIC, reply(200, b"<html>body-text-must-not-leak</html>"))
    assert isinstance(error, LoginUnavailable)
    assert "not a JSON object" in str(error)
    assert "body-text" not in str(error)


def test_token_with_control_characters_is_refused() -> None:
    error = fail(COSMIC, reply(200, {"token": "abc\r\nX-Evil: 1"}))
    assert isinstance(error, LoginUnavailable)


def test_4xx_is_rejected_with_only_the_error_code() -> None:
    body = {"error": "invalid_grant", "error_description": "body-text-must-not-leak"}
    error = fail(COSMIC, reply(400, body))
    assert isinstance(error, LoginRejected)
    assert error.upstream_status == 400
    assert str(error) == "route 'api': login answered 400 (invalid_grant)"


def test_error_code_that_is_a_message_or_a_secret_is_not_reported() -> None:
    assert "Invalid" not in str(fail(COSMIC, reply(401, {"error": "Invalid login for me"})))
    error = fail(COSMIC, reply(401, {"error": PASSWORD}))
    assert str(error) == "route 'api': login answered 401"


def test_numeric_error_code_is_reported() -> None:
    error = fail(COSMIC, reply(401, {"error_code": 1001, "message": "body-text"}))
    assert str(error) == "route 'api': login answered 401 (1001)"


@pytest.mark.parametrize("status", [500, 503, 302, 101])
def test_5xx_and_other_statuses_are_unavailable(status: int) -> None:
    error = fail(COSMIC, reply(status, b"body-text-must-not-leak"))
    assert isinstance(error, LoginUnavailable)
    assert not isinstance(error, LoginRejected)
    assert error.upstream_status == status
    assert "body-text" not in str(error)


EMNIFY = build("emnify", username="me@example.com", password=PASSWORD)


def emnify_grant() -> Grant:
    answer = {"auth_token": make_jwt(NOW + 4 * 3600), "refresh_token": "refresh-tok-1"}
    return login(EMNIFY, reply(200, answer))[1]


def test_refresh_keeps_the_refresh_token_it_holds() -> None:
    grant = emnify_grant()
    assert can_refresh(EMNIFY, grant)
    later = NOW + 3 * 3600
    flow = refresh_flow(EMNIFY, ROUTE, grant, later)
    call = next(flow)
    assert (call.method, call.path) == ("POST", "/api/v1/authenticate")
    assert json.loads(call.body) == {"refresh_token": "refresh-tok-1"}
    new_token = make_jwt(later + 4 * 3600, sub="renewed")
    renewed = finish(flow, reply(200, {"auth_token": new_token}))
    assert renewed.values == {"token": new_token, "refresh_token": "refresh-tok-1"}
    assert renewed.expires_at == later + 4 * 3600
    assert renewed.obtained_at == later


def test_refresh_takes_a_new_refresh_token_when_given() -> None:
    flow = refresh_flow(EMNIFY, ROUTE, emnify_grant(), NOW)
    next(flow)
    renewed = finish(flow, reply(200, {"auth_token": "t-2", "refresh_token": "refresh-tok-2"}))
    assert renewed.values["refresh_token"] == "refresh-tok-2"


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [
        (reply(200, {"refresh_token": "r"}), LoginUnavailable),
        (reply(401, {"error_token": "refresh_token_expired"}), LoginRejected),
        (reply(502), LoginUnavailable),
    ],
)
def test_refresh_failures_raise_like_login(answer: HttpReply, error_type: type[Exception]) -> None:
    flow = refresh_flow(EMNIFY, ROUTE, emnify_grant(), NOW)
    next(flow)
    with pytest.raises(error_type) as caught:
        flow.send(answer)
    assert "refresh" in str(caught.value)
    assert "refresh-tok-1" not in str(caught.value)


def test_grant_without_refresh_token_cannot_be_refreshed() -> None:
    _, grant = login(EMNIFY, reply(200, {"auth_token": "only-auth"}))
    assert not can_refresh(EMNIFY, grant)
    assert not can_refresh(COSMIC, grant)
    with pytest.raises(ValueError, match="cannot be refreshed"):
        next(refresh_flow(EMNIFY, ROUTE, grant, NOW))


CUCUMBER = build("cucumberstudio", email="me@example.com", password=PASSWORD)
SIGNED_IN = Grant({"token": "tok-old", "client": "client-1", "uid": "me"}, 1000.0, NOW)


def test_adopt_takes_rotated_headers_and_ignores_blank_ones() -> None:
    headers = {"access-token": "tok-new", "client": " ", "uid": "me", "expiry": "2000"}
    adopted = adopt_from_response(CUCUMBER, SIGNED_IN, headers, NOW + 5)
    assert adopted == Grant(
        {"token": "tok-new", "client": "client-1", "uid": "me"}, 2000.0, NOW + 5
    )
    assert "tok-new" in REGISTRY


def test_adopt_keeps_old_expiry_when_the_answer_has_none() -> None:
    adopted = adopt_from_response(CUCUMBER, SIGNED_IN, {"access-token": "tok-new2"}, NOW)
    assert adopted is not None
    assert adopted.expires_at == 1000.0


@pytest.mark.parametrize(
    "headers", [{}, {"access-token": ""}, {"access-token": "  "}, {"access-token": "tok-old"}]
)
def test_adopt_ignores_blank_absent_or_unchanged_tokens(headers: dict[str, str]) -> None:
    assert adopt_from_response(CUCUMBER, SIGNED_IN, headers, NOW) is None


def test_adopt_does_nothing_without_an_adopt_spec() -> None:
    assert adopt_from_response(COSMIC, SIGNED_IN, {"access-token": "x-token"}, NOW) is None


def test_static_grant_holds_the_credentials() -> None:
    spec = build("coco", api_token="coco-api-token-1")
    grant = static_grant(spec, NOW)
    assert grant == Grant({"api_token": "coco-api-token-1"}, None, NOW)
    with pytest.raises(ValueError, match="static credentials"):
        next(login_flow(spec, ROUTE, NOW))


def test_reprs_hide_values() -> None:
    call, grant = login(COSMIC, reply(200, {"token": "tok-repr-secret"}))
    assert PASSWORD not in repr(call)
    assert "tok-repr-secret" not in repr(grant)
    assert "tok-repr-secret" not in repr(reply(200, {"token": "tok-repr-secret"}))
