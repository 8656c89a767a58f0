"""emnify: username + SHA-1 of the password, or an application token, for a refreshable JWT."""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.presets.base import Preset
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RefreshSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "emnify"
PATH = "/api/v1/authenticate"
# Accounts made in the emnify Portal expect the hex SHA-1 of the password, not the password.
PASSWORD_TEMPLATES = {"sha1": "{password|sha1}", "none": "{password}"}


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    hashing = options.get("password_hash", "sha1")
    if hashing not in PASSWORD_TEMPLATES:
        raise PresetProblem("password_hash", "expected one of: sha1, none")
    if "application_token" in secrets:
        given = {*secrets, *options}
        if clash := [k for k in ("username", "password", "password_hash") if k in given]:
            raise PresetProblem(clash[0], "set either application_token or username + password")
        body, refresh = {"application_token": "{application_token}"}, None
    else:
        for key in ("username", "password"):
            if key not in secrets:
                raise PresetProblem(key, f"required by preset {NAME!r} (or set application_token)")
        body = {"username": "{username}", "password": PASSWORD_TEMPLATES[hashing]}
        refresh = RefreshSpec(RequestSpec("POST", PATH, body={"refresh_token": "{refresh_token}"}))
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        login=RequestSpec("POST", PATH, body=body),
        # Only a password login returns a refresh token; an application-token login does not.
        captures=(
            Capture("token", "body", ("auth_token",)),
            Capture("refresh_token", "body", ("refresh_token",), required=False),
        ),
        expiry=ExpirySpec("jwt_exp"),
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
        refresh=refresh,
    )


PRESET = Preset(
    name=NAME,
    secret_fields=("username", "password", "application_token"),
    option_fields=("password_hash",),
    build=build,
    summary="emnify: username + SHA-1 password (or application token) for a refreshable JWT",
    requires=(("username", "password"), ("application_token",)),
)
