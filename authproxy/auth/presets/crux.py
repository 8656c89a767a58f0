"""Crux: username and password for a DRF-style token, sent as `Authorization: Token ...`."""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.presets.base import Preset
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "crux"
DEFAULT_LOGIN_PATH = "/timp/organizations/user-login/"


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    for key in ("username", "password"):
        if key not in secrets:
            raise PresetProblem(key, f"required by preset {NAME!r}")
    login_path = options.get("login_path", DEFAULT_LOGIN_PATH)
    if not login_path.startswith("/"):
        raise PresetProblem("login_path", "must start with '/'")
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        login=RequestSpec(
            "POST", login_path, body={"username": "{username}", "password": "{password}"}
        ),
        # Crux answers `auth_token`; Django REST framework's stock view answers `token`.
        captures=(Capture("token", "body", ("auth_token", "token")),),
        expiry=ExpirySpec("none"),  # no lifetime given: the token is good until a 401
        inject=InjectSpec(headers={"Authorization": "Token {token}"}),
        invalid_statuses=frozenset({401}),  # a 403 is a permission answer, never a re-login
    )


PRESET = Preset(
    name=NAME,
    secret_fields=("username", "password"),
    option_fields=("login_path",),
    build=build,
    summary="Crux: username + password login, `Authorization: Token` until a 401",
    requires=(("username", "password"),),
)
