"""CucumberStudio (devise_token_auth): three headers from sign-in, rotated on ordinary answers."""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.presets.base import Preset
from authproxy.auth_spec import AdoptSpec, AuthSpec, Capture, ExpirySpec, InjectSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "cucumberstudio"
STATIC = ("access_token", "client", "uid")
LOGIN = ("email", "password")


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    static = any(key in secrets for key in STATIC)
    if static and (mixed := [key for key in LOGIN if key in secrets]):
        raise PresetProblem(mixed[0], "set either email + password or access_token + client + uid")
    for key in STATIC if static else LOGIN:
        if key not in secrets:
            raise PresetProblem(key, f"required by preset {NAME!r}")
    token = "access_token" if static else "token"  # static grants are named after their fields
    login = RequestSpec(
        "POST", "/api/auth/sign_in", body={"email": "{email}", "password": "{password}"}
    )
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        login=None if static else login,
        captures=() if static else tuple(Capture(n, "header", (h,)) for n, h in _HEADERS),
        expiry=ExpirySpec("header", key="expiry"),  # POSIX seconds, repeated on every answer
        inject=InjectSpec(
            headers={"access-token": f"{{{token}}}", "client": "{client}", "uid": "{uid}"},
            defaults={"Accept": "application/vnd.api+json; version=1"},
        ),
        adopt=AdoptSpec("access-token", {token: "access-token", "client": "client", "uid": "uid"}),
        strip_response_headers=("access-token", "client", "uid", "expiry", "token-type"),
    )


_HEADERS = (("token", "access-token"), ("client", "client"), ("uid", "uid"))

PRESET = Preset(
    name=NAME,
    secret_fields=LOGIN + STATIC,
    option_fields=(),
    build=build,
    summary="CucumberStudio: email + password sign-in (or static token headers), with rotation",
    requires=(LOGIN, STATIC),
)
