"""Cosmic: email and password to `POST /v1/authenticate`, a JWT back, sent as a Bearer token."""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.presets.base import Preset
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "cosmic"


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    for key in ("email", "password"):
        if key not in secrets:
            raise PresetProblem(key, f"required by preset {NAME!r}")
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        login=RequestSpec(
            "POST", "/v1/authenticate", body={"email": "{email}", "password": "{password}"}
        ),
        captures=(Capture("token", "body", ("token",)),),
        expiry=ExpirySpec("jwt_exp"),
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
    )


PRESET = Preset(
    name=NAME,
    secret_fields=("email", "password"),
    option_fields=(),
    build=build,
    summary="Cosmic account API: email + password login, JWT bearer token",
    requires=(("email", "password"),),
)
