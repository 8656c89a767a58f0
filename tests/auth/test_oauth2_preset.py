"""`preset: oauth2` as data, driven by hand: the token requests it renders and how it reads answers.

RFC 6749 is the reference: §2.3.1 (client authentication), §4.3 and §4.4 (the password and client
credentials grants), §5.1 and §5.2 (the token answer and its errors), §6 (refreshing).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import parse_qs

import pytest

from authproxy.auth.flow import HttpCall, HttpReply, login_flow, refresh_flow
from authproxy.auth.grant import Grant
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.presets import PRESETS, PresetProblem
from authproxy.auth_spec import AuthSpec
from authproxy.errors import LoginRejected, LoginUnavailable
from authproxy.secrets import Secret

NOW = 1_700_000_000.0
TOKEN_URL = "https://login.example.com/oauth2/v1/token"
CLIENT_ID = "client-7d1f"
SECRET = "s3cret:with%odd+chars"
PASSWORD = "pw-Tr0ub4dor-oauth"


def build(options: Mapping[str, str] | None = None, **secrets: str) -> AuthSpec:
    given = {"token_url": TOKEN_URL, **(options or {})}
    return PRESETS["oauth2"].build({k: Secret(v) for k, v in secrets.items()}, given)


def problem(options: Mapping[str, str] | None = None, **secrets: str) -> PresetProblem:
    with pytest.raises(PresetProblem) as caught:
        build(options, **secrets)
    return caught.value


def form(call: HttpCall) -> dict[str, list[str]]:
    assert call.headers["Content-Type"] == "application/x-www-form-urlencoded"
    return parse_qs(call.body.decode(), keep_blank_values=True)


def answer(status: int = 200, /, **body: object) -> HttpReply:
    return HttpReply(status, {"content-type": "application/json"}, json.dumps(body).encode())


def login(spec: AuthSpec, reply: HttpReply) -> tuple[HttpCall, Grant]:
    flow = login_flow(spec, "api", NOW)
    call = next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.send(reply)
    grant: Grant = stop.value.value
    return call, grant


def first_call(spec: AuthSpec) -> HttpCall:
    return next(login_flow(spec, "api", NOW))


def fail(spec: AuthSpec, reply: HttpReply) -> Exception:
    flow = login_flow(spec, "api", NOW)
    next(flow)
    with pytest.raises((LoginRejected, LoginUnavailable)) as caught:
        flow.send(reply)
    return caught.value


def test_client_credentials_with_basic_client_auth_by_default() -> None:
    spec = build(
        {"scope": "read write", "params.audience": "https://api.example.com"},
        client_id=CLIENT_ID,
        client_secret=SECRET,
    )
    call = first_call(spec)
    assert (call.method, call.path) == ("POST", TOKEN_URL)
    assert form(call) == {
        "grant_type": ["client_credentials"],
        "scope": ["read write"],
        "audience": ["https://api.example.com"],
    }
    scheme, _, encoded = call.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 §2.3.1: each part form-encoded before the two are joined.
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    assert (user, password) == (CLIENT_ID, "s3cret%3Awith%25odd%2Bchars")
    assert call.headers["Accept"] == "application/json"


def test_client_auth_body_sends_the_secret_as_form_fields() -> None:
    call = first_call(build({"client_auth": "body"}, client_id=CLIENT_ID, client_secret=SECRET))
    assert form(call) == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
    }
    assert "Authorization" not in call.headers


def test_password_grant_of_a_public_client_sends_only_its_client_id() -> None:
    spec = build({"grant": "password"}, client_id=CLIENT_ID, username="ada", password=PASSWORD)
    call = first_call(spec)
    assert form(call) == {
        "grant_type": ["password"],
        "username": ["ada"],
        "password": [PASSWORD],
        "client_id": [CLIENT_ID],
    }
    assert "Authorization" not in call.headers


def test_answer_gives_the_bearer_token_its_lifetime_and_refresh_token() -> None:
    spec = build({"grant": "password"}, client_id=CLIENT_ID, username="ada", password=PASSWORD)
    reply = answer(access_token="at-1", token_type="bearer", expires_in=3600, refresh_token="rt-1")
    _, grant = login(spec, reply)
    assert grant.values == {"token": "at-1", "refresh_token": "rt-1"}
    assert grant.expires_at == NOW + 3600
    headers: dict[str, str] = {}
    CompiledInjector.from_spec(spec).apply(headers, grant)
    assert headers == {"Authorization": "Bearer at-1"}


def test_refresh_uses_the_refresh_token_grant_with_the_same_client_auth() -> None:
    spec = build(
        {"grant": "password", "scope": "read", "params.resource": "https://api.example.com/"},
        client_id=CLIENT_ID,
        client_secret=SECRET,
        username="ada",
        password=PASSWORD,
    )
    held = Grant({"token": "at-1", "refresh_token": "rt-1"}, NOW + 10, NOW)
    flow = refresh_flow(spec, "api", held, NOW)
    call = next(flow)
    assert call.path == TOKEN_URL
    # No scope: the refreshed token keeps the one granted (RFC 6749 §6); never the password.
    assert form(call) == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["rt-1"],
        "resource": ["https://api.example.com/"],
    }
    assert call.headers["Authorization"].startswith("Basic ")
    with pytest.raises(StopIteration) as stop:
        flow.send(answer(access_token="at-2", token_type="Bearer", expires_in=60))
    assert stop.value.value.values == {"token": "at-2", "refresh_token": "rt-1"}


def test_braces_in_scope_and_params_are_sent_as_written() -> None:
    spec = build(
        {"scope": "{odd}", "params.claims": '{"id_token":{}}'},
        client_id=CLIENT_ID,
        client_secret=SECRET,
    )
    assert form(first_call(spec)) == {
        "grant_type": ["client_credentials"],
        "scope": ["{odd}"],
        "claims": ['{"id_token":{}}'],
    }


@pytest.mark.parametrize(
    ("status", "code", "error_type"),
    [
        (401, "invalid_client", LoginRejected),
        (400, "invalid_grant", LoginRejected),
        (400, "invalid_scope", LoginRejected),
        (400, "temporarily_unavailable", LoginUnavailable),
        (503, "temporarily_unavailable", LoginUnavailable),
        (400, "server_error", LoginUnavailable),
        (500, "server_error", LoginUnavailable),
    ],
)
def test_token_endpoint_errors(status: int, code: str, error_type: type[Exception]) -> None:
    spec = build(client_id=CLIENT_ID, client_secret=SECRET)
    description = "Client authentication failed for client-7d1f with secret s3cret"
    error = fail(spec, answer(status, error=code, error_description=description))
    assert type(error) is error_type
    assert str(error) == f"route 'api': login answered {status} ({code})"


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", None])
def test_bearer_or_absent_token_type_is_accepted(token_type: str | None) -> None:
    spec = build(client_id=CLIENT_ID, client_secret=SECRET)
    body: dict[str, object] = {"access_token": "at-1", "expires_in": 60}
    if token_type is not None:
        body["token_type"] = token_type
    _, grant = login(spec, answer(**body))
    assert grant.values["token"] == "at-1"


@pytest.mark.parametrize(
    ("token_type", "shown"),
    [("DPoP", "'DPoP'"), ("mac", "'mac'"), ("not a type\r\n", "an unsupported type"), (7, "")],
)
def test_another_token_type_fails_the_login_and_says_which(token_type: object, shown: str) -> None:
    spec = build(client_id=CLIENT_ID, client_secret=SECRET)
    error = fail(spec, answer(access_token="at-1", token_type=token_type, expires_in=60))
    assert isinstance(error, LoginRejected)
    shown = shown or "an unsupported type"
    assert error.detail == f"login answered 200 with a token of {shown}; only Bearer can be sent"
    assert "at-1" not in str(error)


@pytest.mark.parametrize(
    ("options", "secrets", "key", "message"),
    [
        ({"token_url": "/oauth/token"}, {}, "token_url", "not an absolute http(s) URL"),
        ({"token_url": "ftp://idp.example.com/t"}, {}, "token_url", "not an absolute http(s)"),
        ({"token_url": "https://u:p@idp.example.com/t"}, {}, "token_url", "user or password"),
        ({"token_url": "https://idp.example.com/t#x"}, {}, "token_url", "fragment"),
        ({"grant": "implicit"}, {}, "grant", "client_credentials, password"),
        ({"client_auth": "jwt"}, {}, "client_auth", "basic, body"),
        ({"grant": "password"}, {"client_secret": "x"}, "username", "grant: password"),
        ({}, {"client_secret": "x", "username": "u"}, "username", "only used with grant"),
        ({}, {}, "client_secret", "grant: client_credentials"),
        ({"grant": "password", "client_auth": "body"}, {"username": "u", "password": "p"},
         "client_auth", "only used with client_secret"),
        ({"params.grant_type": "x"}, {"client_secret": "x"}, "params.grant_type", "own field"),
        ({"params.client_secret": "x"}, {"client_secret": "x"}, "params.client_secret", "own"),
    ],
)  # fmt: skip
def test_problems_name_the_field(
    options: dict[str, str], secrets: dict[str, str], key: str, message: str
) -> None:
    found = problem(options, client_id=CLIENT_ID, **secrets)
    assert found.key == key
    assert message in found.message


def test_token_url_and_client_id_are_required() -> None:
    with pytest.raises(PresetProblem) as caught:
        PRESETS["oauth2"].build({"client_id": Secret(CLIENT_ID)}, {})
    assert caught.value.key == "token_url"
    assert problem(client_secret=SECRET).key == "client_id"
