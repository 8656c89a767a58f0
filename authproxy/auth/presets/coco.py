"""Coco Server: password (+ email in multi-user mode) for a JWT, or a long-lived API token."""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.presets.base import Preset
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "coco"


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    if "api_token" in secrets:
        for key in ("password", "email"):
            if key in secrets:
                raise PresetProblem(key, "set either api_token or password (and email), not both")
        return AuthSpec(
            preset=NAME,
            credentials=dict(secrets),
            login=None,
            captures=(),
            expiry=ExpirySpec("none"),
            inject=InjectSpec(headers={"X-API-TOKEN": "{api_token}"}),
        )
    if "password" not in secrets:
        raise PresetProblem("password", f"required by preset {NAME!r} (or set api_token)")
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        # "{email}" is left out of the body when no email is configured (single-user mode).
        login=RequestSpec(
            "POST", "/account/login", body={"email": "{email}", "password": "{password}"}
        ),
        captures=(Capture("token", "body", ("access_token",)),),
        expiry=ExpirySpec("field", key="expire_in"),
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
    )


PRESET = Preset(
    name=NAME,
    secret_fields=("email", "password", "api_token"),
    option_fields=(),
    build=build,
    summary="Coco Server: password (+ email) login for a 24 h JWT, or a static X-API-TOKEN",
    requires=(("password",), ("api_token",)),
)
