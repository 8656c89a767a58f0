"""`preset: oauth2` against a real provider: django-oauth-toolkit, its token endpoint on one port,
the API it protects on another (tests/oauth_server.py).

The provider's request log shows what the proxy sent where: the grant, the form fields (never
their values), and how the client authenticated. The API checks each Bearer token against the
provider's database, so a 200 means the provider issued the token and it is still live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from aiohttp import ClientSession, ClientTimeout
from authfakes import BOUND, RunningProxy, route, running_proxy, settings_for, wait_until
from oauth_provider.serve import fingerprint
from oauth_server import OAuthProvider, running_provider

from authproxy.auth.clock import ManualClock, SystemClock
from authproxy.auth.grant import Grant


@pytest.fixture(scope="module")
def provider() -> Iterator[OAuthProvider]:
    with running_provider() as running:
        yield running


def oauth2_auth(provider: OAuthProvider, client: str, **options: object) -> dict[str, object]:
    credentials = provider.clients[client]
    auth: dict[str, object] = {
        "preset": "oauth2",
        "token_url": provider.token_url,
        "client_id": credentials.client_id,
    }
    if credentials.client_secret is not None:
        auth["client_secret"] = credentials.client_secret
    return {**auth, **options}


def password_auth(provider: OAuthProvider, client: str, **options: object) -> dict[str, object]:
    user = {"grant": "password", "username": provider.username, "password": provider.password}
    return oauth2_auth(provider, client, **{**user, **options})


def api_route(
    provider: OAuthProvider, auth: dict[str, object], prefix: str = "/api"
) -> dict[str, object]:
    return {**route(provider.api, **auth), "prefix": prefix}


def token_calls(provider: OAuthProvider, since: int) -> list[dict[str, Any]]:
    return [entry for entry in provider.requests()[since:] if entry["path"] == "/o/token/"]


def grant_of(running: RunningProxy) -> Grant:
    grant = running.proxy.managers["api"].current_grant
    assert grant is not None
    return grant


async def whoami(running: RunningProxy) -> dict[str, Any]:
    reply = await running.get("/api/whoami")
    assert reply.status == 200, reply.body
    answer: dict[str, Any] = reply.json()
    return answer


async def test_client_credentials_from_a_token_endpoint_on_another_port(
    provider: OAuthProvider,
) -> None:
    since = len(provider.requests())
    auth = oauth2_auth(provider, "service", scope="read", params={"audience": "https://api.test"})
    async with running_proxy(settings_for({"api": api_route(provider, auth)})) as running:
        assert await whoami(running) == {"client": "service", "user": None, "scope": "read"}
        assert (await whoami(running))["client"] == "service"
    seen = provider.requests()[since:]
    (login,) = [entry for entry in seen if entry["server"] == "token"]
    assert login["path"] == "/o/token/"
    assert (login["grant_type"], login["auth"], login["status"]) == (
        "client_credentials",
        "basic",
        200,
    )
    # RFC 6749 §2.3.1: the secret travels in the Basic header, not in the form.
    assert login["fields"] == ["audience", "grant_type", "scope"]
    api = [entry for entry in seen if entry["server"] == "api"]
    assert [(entry["auth"], entry["fields"], entry["status"]) for entry in api] == [
        ("bearer", [], 200),
        ("bearer", [], 200),
    ]


async def test_client_auth_body_and_a_public_client(provider: OAuthProvider) -> None:
    since = len(provider.requests())
    routes = {
        "api": api_route(provider, oauth2_auth(provider, "service", client_auth="body")),
        "mobile": api_route(provider, password_auth(provider, "mobile"), "/mobile"),
    }
    async with running_proxy(settings_for(routes)) as running:
        assert (await whoami(running))["client"] == "service"
        reply = await running.get("/mobile/whoami")
        assert reply.json() == {"client": "mobile", "user": provider.username, "scope": "read"}
    body, public = token_calls(provider, since)
    assert (body["auth"], body["fields"]) == (None, ["client_id", "client_secret", "grant_type"])
    assert (public["auth"], public["grant_type"]) == (None, "password")
    assert public["fields"] == ["client_id", "grant_type", "password", "username"]


async def revoke(provider: OAuthProvider, refresh_token: str) -> None:
    """RFC 7009 at the provider: the refresh token (and its access token) stop working."""
    client = provider.clients["app"]
    assert client.client_secret is not None
    async with ClientSession(timeout=ClientTimeout(total=BOUND)) as http:
        form = {
            "token": refresh_token,
            "token_type_hint": "refresh_token",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
        }
        async with http.post(provider.revoke_url, data=form) as response:
            assert response.status == 200


async def test_password_grant_refreshes_and_falls_back_when_the_refresh_is_refused(
    provider: OAuthProvider,
) -> None:
    since = len(provider.requests())
    clock = ManualClock()
    settings = settings_for({"api": api_route(provider, password_auth(provider, "app"))})
    async with running_proxy(settings, clock) as running:
        assert (await whoami(running))["user"] == provider.username
        first = grant_of(running)
        assert first.expires_at == clock.now() + 300  # the provider's expires_in
        await whoami(running)  # used since the login: it is renewed ahead of expiry
        clock.advance(270)
        await wait_until(lambda: grant_of(running) is not first, "the refresh")
        refreshed = grant_of(running)
        assert refreshed.values["refresh_token"] != first.values["refresh_token"]  # rotated
        assert (await whoami(running))["user"] == provider.username

        await revoke(provider, refreshed.values["refresh_token"])
        clock.advance(270)
        await wait_until(lambda: grant_of(running) is not refreshed, "the fallback login")
        assert (await whoami(running))["user"] == provider.username
    calls = [(call["grant_type"], call["status"]) for call in token_calls(provider, since)]
    assert calls == [
        ("password", 200),
        ("refresh_token", 200),
        ("refresh_token", 400),  # invalid_grant: revoked
        ("password", 200),
    ]


async def test_refused_client_is_held_off_and_the_error_text_is_not_passed_on(
    provider: OAuthProvider,
) -> None:
    since = len(provider.requests())
    routes = {
        "api": api_route(provider, oauth2_auth(provider, "service", client_secret="not-it-5e1d")),
        "pw": api_route(provider, password_auth(provider, "app", password="not-it-8c2b"), "/pw"),
    }
    async with running_proxy(settings_for(routes)) as running:
        for _ in range(2):
            reply = await running.get("/api/whoami")
            assert reply.status == 502
            assert reply.json() == {
                "type": "urn:authproxy:problem:login-rejected",
                "title": "Bad Gateway",
                "status": 502,
                "detail": "login answered 401 (invalid_client)",
                "route": "api",
                "upstream_status": 401,
            }
        reply = await running.get("/pw/whoami")
        assert reply.json()["detail"] == "login answered 400 (invalid_grant)"
        assert b"Invalid credentials" not in reply.body  # the provider's error_description
    # The second request was answered from the hold: one attempt per route, no more.
    assert [call["status"] for call in token_calls(provider, since)] == [401, 400]


async def test_short_lived_tokens_are_renewed_from_expires_in(provider: OAuthProvider) -> None:
    """Tokens of four seconds on the real clock: once the provider lets the first one die, the
    proxy never sends it again; it has its own lifetime from `expires_in`, counted from before
    the token request was sent, so it always runs out first."""
    since = len(provider.requests())
    settings = settings_for({"api": api_route(provider, oauth2_auth(provider, "short"))})
    async with running_proxy(settings, SystemClock()) as running:
        await whoami(running)
        first = grant_of(running)
        assert first.expires_at is not None
        assert first.expires_at - first.obtained_at == 4  # the provider's expires_in
        probe = {"Authorization": f"Bearer {first.values['token']}", "X-Probe": "1"}
        async with ClientSession(timeout=ClientTimeout(total=BOUND)) as http:
            for _ in range(300):  # until the provider refuses the first token: bounded
                async with http.get(f"{provider.api}/whoami", headers=probe) as response:
                    if response.status == 401:
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the provider never let the first token expire")
        refused_at = len(provider.requests())
        assert (await whoami(running))["client"] == "short"
        assert grant_of(running).values["token"] != first.values["token"]
    grants = {call["grant_type"] for call in token_calls(provider, since)}
    assert grants == {"client_credentials"}
    after = [e for e in provider.requests()[refused_at:] if e["server"] == "api"]
    assert after
    assert fingerprint(first.values["token"]) not in {entry["token"] for entry in after}


async def test_custom_flow_logs_in_at_an_absolute_url(provider: OAuthProvider) -> None:
    since = len(provider.requests())
    client = provider.clients["service"]
    auth = {
        "credentials": {"id": client.client_id, "secret": client.client_secret},
        "login": {
            "url": provider.token_url,
            "format": "form",
            "body": {"grant_type": "client_credentials", "client_id": "{id}",
                     "client_secret": "{secret}"},
        },
        "token": {"key": "access_token"},
        "expiry": {"from": "field", "key": "expires_in"},
        "inject": {"headers": {"Authorization": "Bearer {token}"}},
    }  # fmt: skip
    async with running_proxy(settings_for({"api": route(provider.api, **auth)})) as running:
        assert (await whoami(running))["client"] == "service"
    (login,) = token_calls(provider, since)
    assert (login["server"], login["status"]) == ("token", 200)
