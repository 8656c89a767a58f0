"""Any OAuth2 token endpoint (RFC 6749): the client credentials or password grant, Bearer tokens.

The token URL is absolute and usually on another origin than the API (an identity provider).
Renewal uses the `refresh_token` grant when the answer carried a refresh token (§6), and a refused
refresh falls back to the original grant (`auth/renewal.py`).
"""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth.endpoints import absolute_url
from authproxy.auth.presets.base import Preset
from authproxy.auth.templates import literal
from authproxy.auth_spec import AuthSpec, Capture, ExpirySpec, InjectSpec, RefreshSpec, RequestSpec
from authproxy.errors import PresetProblem
from authproxy.secrets import Secret

NAME = "oauth2"
GRANTS = ("client_credentials", "password")
CLIENT_AUTH = ("basic", "body")
# Form fields the preset writes itself; `params` may not set them a second time.
RESERVED = (
    *("grant_type", "scope", "username", "password", "refresh_token"),
    *("client_id", "client_secret"),
)
# Some providers answer form-encoded unless asked for JSON (RFC 6749 §5.1 says JSON).
ACCEPT_JSON = {"Accept": "application/json"}


def build(secrets: Mapping[str, Secret], options: Mapping[str, str]) -> AuthSpec:
    token_url = _token_url(options.get("token_url"))
    grant = _choice(options, "grant", GRANTS)
    client_body, basic = _client_auth(secrets, options, grant)
    if grant == "password":
        for key in ("username", "password"):
            if key not in secrets:
                raise PresetProblem(key, "required with grant: password")
        grant_body = {"grant_type": grant, "username": "{username}", "password": "{password}"}
    elif given := [key for key in ("username", "password") if key in secrets]:
        raise PresetProblem(given[0], "only used with grant: password")
    else:
        grant_body = {"grant_type": grant}
    extra = _params(options)
    scope = {"scope": literal(options["scope"])} if "scope" in options else {}

    def call(body: dict[str, str]) -> RequestSpec:
        return RequestSpec("POST", token_url, "form", body, ACCEPT_JSON, basic)

    login = call({**grant_body, **client_body, **scope, **extra})
    # §6: without a scope the refreshed token keeps the one granted; RFC 8707 §2.2 sends the
    # `resource` again, which is why the params are repeated.
    refresh = {"grant_type": "refresh_token", "refresh_token": "{refresh_token}"}
    return AuthSpec(
        preset=NAME,
        credentials=dict(secrets),
        login=login,
        captures=(
            Capture("token", "body", ("access_token",)),
            Capture("refresh_token", "body", ("refresh_token",), required=False),
        ),
        expiry=ExpirySpec("field", key="expires_in"),
        inject=InjectSpec(headers={"Authorization": "Bearer {token}"}),
        refresh=RefreshSpec(call({**refresh, **client_body, **extra})),
        token_type="Bearer",
    )


def _token_url(text: str | None) -> str:
    if text is None:
        raise PresetProblem("token_url", f"required by preset {NAME!r}")
    try:
        return absolute_url(text)
    except ValueError as exc:
        raise PresetProblem("token_url", str(exc)) from None


def _choice(options: Mapping[str, str], key: str, choices: tuple[str, ...]) -> str:
    value = options.get(key, choices[0])
    if value not in choices:
        raise PresetProblem(key, f"expected one of: {', '.join(choices)}")
    return value


def _client_auth(
    secrets: Mapping[str, Secret], options: Mapping[str, str], grant: str
) -> tuple[dict[str, str], tuple[str, str] | None]:
    """The client's body fields and Basic pair: §2.3.1 (`basic`, the default, or `body`), or a
    public client's bare `client_id` (§3.2.1)."""
    if "client_id" not in secrets:
        raise PresetProblem("client_id", f"required by preset {NAME!r}")
    method = _choice(options, "client_auth", CLIENT_AUTH)
    if "client_secret" not in secrets:
        if grant == "client_credentials":  # §4.4: confidential clients only
            raise PresetProblem("client_secret", "required with grant: client_credentials")
        if "client_auth" in options:
            raise PresetProblem("client_auth", "only used with client_secret")
        return {"client_id": "{client_id}"}, None
    if method == "body":
        return {"client_id": "{client_id}", "client_secret": "{client_secret}"}, None
    return {}, ("{client_id}", "{client_secret}")


def _params(options: Mapping[str, str]) -> dict[str, str]:
    """Extra form fields (`audience`, `resource`), sent as written."""
    params = {k.removeprefix("params."): v for k, v in options.items() if k.startswith("params.")}
    for key in params:
        if key in RESERVED:
            raise PresetProblem(f"params.{key}", "set by the preset; use its own field")
    return {key: literal(value) for key, value in params.items()}


PRESET = Preset(
    name=NAME,
    secret_fields=("client_id", "client_secret", "username", "password"),
    option_fields=("token_url", "grant", "client_auth", "scope"),
    build=build,
    summary="any OAuth2 token endpoint: client credentials or password grant, Bearer tokens",
    table_fields=("params",),
    requires=(("token_url", "client_id"),),
)
