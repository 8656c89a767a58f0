"""config/: `preset: oauth2` with its `params` table, and custom flows that log in at a `url`."""

from __future__ import annotations

import textwrap
from urllib.parse import parse_qs

import pytest
import yaml

from authproxy.auth.flow import login_flow
from authproxy.auth_spec import AuthSpec
from authproxy.config.describe import describe_settings
from authproxy.config.load import parse_settings
from authproxy.errors import ConfigError
from authproxy.secrets import REGISTRY
from authproxy.settings import Settings

ENV = {
    "IDP_CLIENT_ID": "cid-4f2a9e",
    "IDP_CLIENT_SECRET": "csecret-77ab01",
    "TENANT_KEY": "tenant-path-key-9c3d",
}

OAUTH2 = """
routes:
  billing:
    upstream: https://billing.example.com/v2
    auth:
      preset: oauth2
      token_url: https://login.example.com/${TENANT_KEY}/oauth2/token?api-version=2
      client_id: ${IDP_CLIENT_ID}
      client_secret: ${IDP_CLIENT_SECRET}
      scope: billing.read
      params: {audience: "https://billing.example.com", resource: urn:billing}
"""


def parse(text: str, environ: dict[str, str] | None = None) -> Settings:
    data = yaml.safe_load(textwrap.dedent(text))
    return parse_settings(data, source="test.yaml", environ=ENV if environ is None else environ)


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text)
    return [str(problem) for problem in info.value.problems]


def auth_of(settings: Settings) -> AuthSpec:
    spec = settings.routes[0].auth
    assert spec is not None
    return spec


def test_oauth2_route_logs_in_at_the_token_url_with_its_params() -> None:
    spec = auth_of(parse(OAUTH2))
    assert spec.preset == "oauth2"
    call = next(login_flow(spec, "billing", 0.0))
    assert call.path == f"https://login.example.com/{ENV['TENANT_KEY']}/oauth2/token?api-version=2"
    assert parse_qs(call.body.decode()) == {
        "grant_type": ["client_credentials"],
        "scope": ["billing.read"],
        "audience": ["https://billing.example.com"],
        "resource": ["urn:billing"],
    }
    assert set(spec.credentials) == {"client_id", "client_secret"}


def test_check_expand_shows_the_token_request_and_the_token_type_expected() -> None:
    settings = parse(OAUTH2)
    assert ENV["TENANT_KEY"] in REGISTRY  # what the environment put in the token URL's path
    described = describe_settings(settings)
    auth = described["routes"]["billing"]["auth"]  # type: ignore[index]
    assert auth["login"] == {
        "method": "POST",
        "path": "https://login.example.com/<redacted>/oauth2/token?api-version=2",
        "encoding": "form",
        "body": {
            "grant_type": "client_credentials",
            "scope": "billing.read",
            "audience": "https://billing.example.com",
            "resource": "urn:billing",
        },
        "headers": {"Accept": "application/json"},
        "basic_auth": ["{client_id}", "{client_secret}"],
    }
    assert auth["token_type"] == "Bearer"
    assert ENV["IDP_CLIENT_SECRET"] not in str(described)


def test_oauth2_problems_name_their_keys() -> None:
    text = OAUTH2.replace("token_url: https://login.example.com/", "token_url: /").replace(
        'params: {audience: "https://billing.example.com", resource: urn:billing}',
        "params: {grant_type: x, '': y, claims: {a: b}}",
    )
    assert problems(text) == [
        "routes.billing.auth.params.: an empty name",
        "routes.billing.auth.params.claims: expected a string, got a mapping",
    ]
    text = text.replace("params: {grant_type: x, '': y, claims: {a: b}}", "params: {grant_type: x}")
    assert problems(text) == [
        "routes.billing.auth.token_url: not an absolute http(s) URL,"
        " e.g. https://login.example.com/oauth/token"
    ]
    text = OAUTH2.replace("resource: urn:billing", "grant_type: password")
    assert problems(text) == [
        "routes.billing.auth.params.grant_type: set by the preset; use its own field"
    ]


def test_params_must_be_a_mapping_and_unknown_keys_are_named() -> None:
    text = OAUTH2.replace(
        'params: {audience: "https://billing.example.com", resource: urn:billing}',
        "params: [audience]\n      audience: x",
    )
    assert problems(text) == [
        "routes.billing.auth.audience: unknown key; expected one of: client_auth, client_id,"
        " client_secret, grant, invalid_statuses, params, password, preset,"
        " relogin_after_rejection, renew_at, scope, timeout, token_url, ttl, username, warm",
        "routes.billing.auth.params: expected a mapping, got a list",
    ]


CUSTOM = """
routes:
  api:
    upstream: https://api.example.com
    auth:
      credentials: {key: "${IDP_CLIENT_SECRET}"}
      login: {url: "https://idp.example.com:8443/token", format: form, body: {k: "{key}"}}
      token: {key: access_token, refresh_key: refresh_token}
      refresh: {url: "https://idp.example.com:8443/refresh", body: {r: "{refresh_token}"}}
      inject: {headers: {Authorization: "Bearer {token}"}}
"""


def test_custom_flow_may_log_in_and_refresh_at_an_absolute_url() -> None:
    spec = auth_of(parse(CUSTOM))
    assert spec.login is not None
    assert spec.refresh is not None
    assert spec.login.path == "https://idp.example.com:8443/token"
    assert spec.refresh.request.path == "https://idp.example.com:8443/refresh"


@pytest.mark.parametrize(
    ("login", "message"),
    [
        (
            '{path: /token, url: "https://idp.example.com/token"}',
            "login.url: give either path (on the upstream) or url (an absolute URL), not both",
        ),
        ('{url: "idp.example.com/token"}', "login.url: not an absolute http(s) URL"),
        ('{url: "https://me:pw@idp.example.com/t"}', "login.url: must not hold a user or password"),
        ('{url: "https://idp.example.com:99999/t"}', "login.url: not a valid URL"),
        (
            '{path: "https://idp.example.com/token"}',
            "login.path: must start with '/'; it is joined to the upstream URL; for another"
            " origin, give url instead",
        ),
        ("{format: form}", "login.path: required"),
    ],
)
def test_custom_login_target_problems(login: str, message: str) -> None:
    text = CUSTOM.replace(
        '{url: "https://idp.example.com:8443/token", format: form, body: {k: "{key}"}}', login
    )
    (found,) = problems(text)
    assert found.startswith(f"routes.api.auth.{message}")
