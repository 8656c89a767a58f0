"""The five presets: fields, rendered login calls, and what they inject once logged in."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

import jwt
import pytest

from authproxy.auth.flow import HttpCall, HttpReply, login_flow, static_grant
from authproxy.auth.grant import Grant
from authproxy.auth.inject import CompiledInjector
from authproxy.auth.presets import PRESETS, PresetProblem
from authproxy.auth_spec import AuthSpec
from authproxy.secrets import Secret

NOW = 1_700_000_000.0
PASSWORD = "pw-preset-S3cret"
JWT = jwt.encode({"exp": int(NOW + 14400)}, "test-signing-key-of-32-bytes-min!", "HS256")


def build(preset: str, options: Mapping[str, str] | None = None, **secrets: str) -> AuthSpec:
    return PRESETS[preset].build({k: Secret(v) for k, v in secrets.items()}, options or {})


def problem(
    preset: str, secrets: Mapping[str, str], options: Mapping[str, str] | None = None
) -> PresetProblem:
    with pytest.raises(PresetProblem) as caught:
        PRESETS[preset].build({k: Secret(v) for k, v in secrets.items()}, options or {})
    assert PASSWORD not in str(caught.value)
    return caught.value


def login(spec: AuthSpec, reply: HttpReply) -> tuple[HttpCall, Grant, dict[str, str]]:
    """Run the login, then inject the grant into an empty request's headers."""
    flow = login_flow(spec, "route", NOW)
    call = next(flow)
    with pytest.raises(StopIteration) as stop:
        flow.send(reply)
    grant: Grant = stop.value.value
    headers: dict[str, str] = {}
    CompiledInjector.from_spec(spec).apply(headers, grant)
    return call, grant, headers


def ok(body: object = None, headers: Mapping[str, str] | None = None) -> HttpReply:
    return HttpReply(200, dict(headers or {}), json.dumps(body).encode() if body else b"")


def test_registry_lists_the_presets_by_name() -> None:
    assert set(PRESETS) == {"cosmic", "coco", "crux", "cucumberstudio", "emnify", "oauth2"}
    for name, preset in PRESETS.items():
        assert preset.name == name
        assert preset.summary


def test_cosmic() -> None:
    spec = build("cosmic", email="me@example.com", password=PASSWORD)
    call, grant, headers = login(spec, ok({"success": True, "token": JWT}))
    assert call.path == "/v1/authenticate"
    assert json.loads(call.body) == {"email": "me@example.com", "password": PASSWORD}
    assert grant.expires_at == NOW + 14400
    assert headers == {"Authorization": f"Bearer {JWT}"}


def test_cosmic_requires_both_fields() -> None:
    error = problem("cosmic", {"email": "me@example.com"})
    assert (error.key, error.message) == ("password", "required by preset 'cosmic'")


def test_coco_password_login() -> None:
    spec = build("coco", email="admin@example.com", password=PASSWORD)
    call, grant, headers = login(spec, ok({"access_token": "coco-jwt", "expire_in": 86400}))
    assert call.path == "/account/login"
    assert json.loads(call.body) == {"email": "admin@example.com", "password": PASSWORD}
    assert grant.expires_at == NOW + 86400
    assert headers == {"Authorization": "Bearer coco-jwt"}


def test_coco_api_token_is_static() -> None:
    spec = build("coco", api_token="coco-api-token-9")
    assert spec.is_static
    assert spec.expiry.source == "none"
    headers: dict[str, str] = {}
    CompiledInjector.from_spec(spec).apply(headers, static_grant(spec))
    assert headers == {"X-API-TOKEN": "coco-api-token-9"}


@pytest.mark.parametrize(
    ("secrets", "key"),
    [
        ({"api_token": "t-1234", "password": PASSWORD}, "password"),
        ({"api_token": "t-1234", "email": "e@x"}, "email"),
        ({}, "password"),
        ({"email": "e@x"}, "password"),
    ],
)
def test_coco_needs_exactly_one_mode(secrets: dict[str, str], key: str) -> None:
    assert problem("coco", secrets).key == key


def test_crux() -> None:
    spec = build("crux", username="ops", password=PASSWORD)
    call, grant, headers = login(spec, ok({"auth_token": "crux-tok-1"}))
    assert call.path == "/timp/organizations/user-login/"
    assert json.loads(call.body) == {"username": "ops", "password": PASSWORD}
    assert grant.expires_at is None
    assert headers == {"Authorization": "Token crux-tok-1"}
    assert spec.invalid_statuses == {401}


def test_crux_login_path_option() -> None:
    spec = build("crux", {"login_path": "/api/login/"}, username="ops", password=PASSWORD)
    assert spec.login is not None
    assert spec.login.path == "/api/login/"
    assert problem("crux", {"username": "u", "password": "p"}, {"login_path": "api/login"}).key == (
        "login_path"
    )


def test_cucumberstudio_sign_in() -> None:
    spec = build("cucumberstudio", email="me@example.com", password=PASSWORD)
    answer = ok(
        None,
        {
            "access-token": "cs-tok",
            "client": "cs-cli",
            "uid": "me@example.com",
            "expiry": "1486047985",
            "token-type": "Bearer",
        },
    )
    call, grant, headers = login(spec, answer)
    assert call.path == "/api/auth/sign_in"
    assert json.loads(call.body) == {"email": "me@example.com", "password": PASSWORD}
    assert grant.expires_at == 1486047985.0
    assert headers == {
        "access-token": "cs-tok",
        "client": "cs-cli",
        "uid": "me@example.com",
        "Accept": "application/vnd.api+json; version=1",
    }
    assert "expiry" in spec.strip_response_headers
    assert spec.adopt is not None
    assert spec.adopt.trigger == "access-token"


def test_cucumberstudio_static_headers() -> None:
    spec = build("cucumberstudio", access_token="cs-static", client="cs-cli", uid="me@x.com")
    assert spec.is_static
    headers: dict[str, str] = {}
    CompiledInjector.from_spec(spec).apply(headers, static_grant(spec))
    assert headers["access-token"] == "cs-static"
    assert (headers["client"], headers["uid"]) == ("cs-cli", "me@x.com")


@pytest.mark.parametrize(
    ("secrets", "key"),
    [
        ({"access_token": "a-12", "client": "c-12"}, "uid"),
        ({"access_token": "a-12", "client": "c", "uid": "u", "email": "e@x"}, "email"),
        ({"email": "e@x"}, "password"),
        ({"client": "c-12", "password": PASSWORD}, "password"),
    ],
)
def test_cucumberstudio_mixed_or_incomplete(secrets: dict[str, str], key: str) -> None:
    assert problem("cucumberstudio", secrets).key == key


def test_emnify_sends_the_sha1_of_the_password() -> None:
    spec = build("emnify", username="me@example.com", password=PASSWORD)
    call, grant, headers = login(spec, ok({"auth_token": JWT, "refresh_token": "emn-refresh"}))
    assert call.path == "/api/v1/authenticate"
    body = json.loads(call.body)
    assert body == {
        "username": "me@example.com",
        "password": hashlib.sha1(PASSWORD.encode()).hexdigest(),
    }
    assert PASSWORD.encode() not in call.body
    assert grant.values["refresh_token"] == "emn-refresh"
    assert grant.expires_at == NOW + 14400
    assert spec.refresh is not None
    assert headers == {"Authorization": f"Bearer {JWT}"}


def test_emnify_plain_password_option() -> None:
    spec = build("emnify", {"password_hash": "none"}, username="u", password=PASSWORD)
    call, _, _ = login(spec, ok({"auth_token": JWT}))
    assert json.loads(call.body)["password"] == PASSWORD


def test_emnify_application_token() -> None:
    spec = build("emnify", application_token="emn-app-token")
    call, grant, _ = login(spec, ok({"auth_token": JWT}))
    assert json.loads(call.body) == {"application_token": "emn-app-token"}
    assert spec.refresh is None
    assert "refresh_token" not in grant.values


def test_emnify_bad_password_hash() -> None:
    error = problem("emnify", {"username": "u", "password": PASSWORD}, {"password_hash": "md5"})
    assert (error.key, error.message) == ("password_hash", "expected one of: sha1, none")


@pytest.mark.parametrize(
    ("secrets", "options", "key"),
    [
        ({"application_token": "a-12", "password": PASSWORD}, {}, "password"),
        ({"application_token": "a-12"}, {"password_hash": "none"}, "password_hash"),
        ({"username": "u"}, {}, "password"),
    ],
)
def test_emnify_conflicts(secrets: dict[str, str], options: dict[str, str], key: str) -> None:
    assert problem("emnify", secrets, options).key == key


def test_fields_are_secrets_or_options() -> None:
    assert PRESETS["emnify"].option_fields == ("password_hash",)
    assert PRESETS["crux"].option_fields == ("login_path",)
    assert set(PRESETS["cucumberstudio"].fields) == {
        "email",
        "password",
        "access_token",
        "client",
        "uid",
    }
