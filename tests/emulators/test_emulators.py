"""The five emulated upstream APIs, exercised over real sockets with a fake clock.

Contracts come from the APIs' own docs (/work/shared/seeds): login answer shapes, token lifetimes,
rejection statuses and bodies, plus the switches and counters the proxy's tests rely on.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import jwt
import pytest
from aiohttp import ClientConnectionError, ClientSession, web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient

from authproxy.emulators import coco, cosmic, crux, cucumberstudio, emnify, emulator_state
from authproxy.emulators.common import Clock, EmulatorState
from authproxy.emulators.demo_stack import start_emulators

Client = TestClient[web.Request, web.Application]
NAMES = ("cosmic", "coco", "crux", "cucumberstudio", "emnify")
START = 1_700_000_000.0


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def session() -> AsyncIterator[ClientSession]:
    async with ClientSession() as session:
        yield session


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()


MAKE_APP: Mapping[str, Callable[[Clock], web.Application]] = {
    "cosmic": lambda clock: cosmic.make_app(clock=clock),
    "coco": lambda clock: coco.make_app(clock=clock),
    "crux": lambda clock: crux.make_app(clock=clock),
    "cucumberstudio": lambda clock: cucumberstudio.make_app(clock=clock),
    "emnify": lambda clock: emnify.make_app(clock=clock),
}
LOGIN_PATH = {
    "cosmic": cosmic.LOGIN_PATH,
    "coco": coco.LOGIN_PATH,
    "crux": crux.LOGIN_PATH,
    "cucumberstudio": cucumberstudio.LOGIN_PATH,
    "emnify": emnify.LOGIN_PATH,
}


def login_body(name: str, demo: Mapping[str, str]) -> dict[str, str]:
    """What a client sends to log in with an API's demo credentials."""
    if name == "emnify":
        return {"username": demo["username"], "password": sha1(demo["password"])}
    keys = ("username", "password") if name == "crux" else ("email", "password")
    return {key: demo[key] for key in keys}


DEMO = {
    "cosmic": cosmic.DEMO_CREDENTIALS,
    "coco": coco.DEMO_CREDENTIALS,
    "crux": crux.DEMO_CREDENTIALS,
    "cucumberstudio": cucumberstudio.DEMO_CREDENTIALS,
    "emnify": emnify.DEMO_CREDENTIALS,
}


async def log_in(session: ClientSession, base: str, name: str) -> dict[str, str]:
    """Log in with the demo credentials; return the headers that authenticate a request."""
    async with session.post(base + LOGIN_PATH[name], json=login_body(name, DEMO[name])) as resp:
        assert resp.status == 200
        data = await resp.json()
        if name == "cucumberstudio":
            return {key: resp.headers[key] for key in ("access-token", "client", "uid")}
    if name == "crux":
        return {"Authorization": f"Token {data['auth_token']}"}
    key = {"cosmic": "token", "coco": "access_token", "emnify": "auth_token"}[name]
    return {"Authorization": f"Bearer {data[key]}"}


async def serve(aiohttp_client: AiohttpClient, app: web.Application) -> Client:
    return await aiohttp_client(app)


def base_url(client: Client) -> str:
    return str(client.make_url("")).rstrip("/")


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# ---- common behaviour, every API -------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
async def test_echo_redacts_credentials_and_records_raw_headers(
    name: str, aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = MAKE_APP[name](clock)
    client = await serve(aiohttp_client, app)
    auth = await log_in(client.session, base_url(client), name)
    headers = {"X-API-TOKEN": "api-secret", "Cookie": "sid=cookie-secret", "X-Trace": "t-1"}
    resp = await client.patch(
        "/v1/things/a%2Fb?x=1&y=%20", headers={**headers, **auth}, data=b"12345"
    )
    text = await resp.text()
    assert resp.status == 200
    echo = await resp.json()
    assert echo["api"] == name
    assert echo["auth"] == "ok"
    assert (echo["method"], echo["path"], echo["query"]) == (
        "PATCH",
        "/v1/things/a%2Fb",
        "x=1&y=%20",
    )
    assert echo["body_bytes"] == 5
    assert echo["headers"]["X-Trace"] == "t-1"
    for key in [*headers, *auth]:
        if key != "X-Trace":
            assert echo["headers"][key] == "<redacted>"
    for secret in ["api-secret", "cookie-secret", *auth.values()]:
        assert secret not in text
    state = emulator_state(app)
    assert (state.logins, state.login_attempts, state.requests) == (1, 1, 1)
    assert state.last_headers is not None
    assert state.last_headers["X-API-TOKEN"] == "api-secret"


@pytest.mark.parametrize("name", NAMES)
async def test_no_credentials_is_401_and_revoke_all_invalidates(
    name: str, aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = MAKE_APP[name](clock)
    client = await serve(aiohttp_client, app)
    assert (await client.get("/anything")).status == 401
    auth = await log_in(client.session, base_url(client), name)
    assert (await client.get("/anything", headers=auth)).status == 200
    emulator_state(app).revoke_all()
    assert (await client.get("/anything", headers=auth)).status == 401
    assert emulator_state(app).requests == 3


@pytest.mark.parametrize("name", NAMES)
async def test_fail_logins_with_answers_every_login_with_that_status(
    name: str, aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = MAKE_APP[name](clock)
    state = emulator_state(app)
    state.fail_logins_with = 503
    client = await serve(aiohttp_client, app)
    resp = await client.post(LOGIN_PATH[name], json=login_body(name, DEMO[name]))
    assert resp.status == 503
    assert (state.logins, state.login_attempts) == (0, 1)
    state.fail_logins_with = None
    await log_in(client.session, base_url(client), name)
    assert (state.logins, state.login_attempts) == (1, 2)


async def test_login_delay_holds_the_answer(aiohttp_client: AiohttpClient) -> None:
    app = cosmic.make_app()
    app[cosmic.STATE].login_delay = 0.05
    client = await serve(aiohttp_client, app)
    started = time.monotonic()
    await log_in(client.session, base_url(client), "cosmic")
    assert time.monotonic() - started >= 0.05


# ---- Cosmic ----------------------------------------------------------------------------------


async def test_cosmic_login_json_or_form(aiohttp_client: AiohttpClient, clock: FakeClock) -> None:
    app = cosmic.make_app(cosmic.CosmicSettings(token_lifetime=600), clock=clock)
    client = await serve(aiohttp_client, app)
    creds = dict(cosmic.DEMO_CREDENTIALS)
    for resp in [
        await client.post("/v1/authenticate", json=creds),
        await client.post("/v1/authenticate", data=creds),
    ]:
        assert resp.status == 200
        body = await resp.json()
        assert body["success"] is True
        assert body["message"] == "Token created successfully."
        token_claims = claims(body["token"])
        assert token_claims["email"] == creds["email"]
        assert token_claims["iat"] == int(START)
        assert token_claims["exp"] == int(START) + 600
    assert app[cosmic.STATE].logins == 2


async def test_cosmic_wrong_password_is_401_without_echo(aiohttp_client: AiohttpClient) -> None:
    client = await serve(aiohttp_client, cosmic.make_app())
    creds = {"email": cosmic.DEMO_CREDENTIALS["email"], "password": "wrong-pässword"}
    resp = await client.post("/v1/authenticate", data=creds)
    assert resp.status == 401
    body = await resp.json()
    assert body["success"] is False
    assert "pässword" not in await resp.text()


async def test_cosmic_token_expires_with_the_clock(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    client = await serve(aiohttp_client, cosmic.make_app(clock=clock))
    auth = await log_in(client.session, base_url(client), "cosmic")
    clock.advance(3599)
    assert (await client.get("/v1/buckets", headers=auth)).status == 200
    clock.advance(1)
    resp = await client.get("/v1/buckets", headers=auth)
    assert resp.status == 401
    assert (await resp.json())["success"] is False


# ---- Coco ------------------------------------------------------------------------------------


@pytest.mark.parametrize("with_email", [False, True])
async def test_coco_login_shape(
    with_email: bool, aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    client = await serve(aiohttp_client, coco.make_app(clock=clock))
    body = {"password": coco.DEMO_CREDENTIALS["password"]}
    if with_email:
        body["email"] = coco.DEMO_CREDENTIALS["email"]
    resp = await client.post("/account/login", json=body)
    assert resp.status == 200
    data = await resp.json()
    assert {k: v for k, v in data.items() if k != "access_token"} == {
        "expire_in": 86400,
        "id": "coco-default-user",
        "status": "ok",
        "username": "coco-default-user",
    }
    token_claims = claims(data["access_token"])
    assert token_claims["exp"] - token_claims["iat"] == 86400


@pytest.mark.parametrize(
    "body",
    [{"password": "nope"}, {"email": "other@example.com", "password": "demo-password"}, {}],
)
async def test_coco_wrong_credentials_are_401(
    body: dict[str, str], aiohttp_client: AiohttpClient
) -> None:
    client = await serve(aiohttp_client, coco.make_app())
    resp = await client.post("/account/login", json=body)
    assert resp.status == 401
    assert (await resp.json())["status"] == "error"


async def test_coco_api_token_and_bearer_expiry(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    settings = coco.CocoSettings(api_token="tok-123", token_lifetime=60)
    client = await serve(aiohttp_client, coco.make_app(settings, clock=clock))
    assert (await client.get("/account/profile", headers={"X-API-TOKEN": "tok-123"})).status == 200
    assert (await client.get("/account/profile", headers={"X-API-TOKEN": "tok-12"})).status == 401
    auth = await log_in(client.session, base_url(client), "coco")
    assert (await client.get("/account/profile", headers=auth)).status == 200
    clock.advance(60)
    assert (await client.get("/account/profile", headers=auth)).status == 401


# ---- Crux ------------------------------------------------------------------------------------


@pytest.mark.parametrize("token_key", ["auth_token", "token"])
async def test_crux_login_returns_one_drf_key_until_it_expires(
    token_key: str, aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = crux.make_app(crux.CruxSettings(token_key=token_key), clock=clock)
    client = await serve(aiohttp_client, app)
    body = login_body("crux", crux.DEMO_CREDENTIALS)
    first = await (await client.post(crux.LOGIN_PATH, json=body)).json()
    assert list(first) == [token_key]
    assert re.fullmatch(r"[0-9a-f]{40}", first[token_key])
    again = await (await client.post(crux.LOGIN_PATH, json=body)).json()
    assert again == first  # DRF's Token.objects.get_or_create
    clock.advance(7200)
    resp = await client.get("/api/x/", headers={"Authorization": f"Token {first[token_key]}"})
    assert resp.status == 401
    assert await resp.json() == {"detail": "Invalid token."}
    fresh = await (await client.post(crux.LOGIN_PATH, json=body)).json()
    assert fresh != first
    assert app[crux.STATE].logins == 3


async def test_crux_rejections_follow_drf(aiohttp_client: AiohttpClient) -> None:
    client = await serve(aiohttp_client, crux.make_app())
    resp = await client.post(crux.LOGIN_PATH, json={"username": "demo", "password": "x"})
    assert resp.status == 400
    assert await resp.json() == {
        "non_field_errors": ["Unable to log in with provided credentials."]
    }
    resp = await client.post(crux.LOGIN_PATH, json={"username": "demo"})
    assert resp.status == 400
    assert await resp.json() == {"password": ["This field is required."]}

    resp = await client.get("/api/x/")
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Token"
    assert await resp.json() == {"detail": "Authentication credentials were not provided."}
    resp = await client.get("/api/x/", headers={"Authorization": "Bearer abc"})
    assert await resp.json() == {"detail": "Authentication credentials were not provided."}
    resp = await client.get("/api/x/", headers={"Authorization": "Token " + "0" * 40})
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"] == "Token"
    assert await resp.json() == {"detail": "Invalid token."}

    auth = await log_in(client.session, base_url(client), "crux")
    resp = await client.delete("/forbidden/thing", headers=auth)
    assert resp.status == 403
    assert await resp.json() == {"detail": "You do not have permission to perform this action."}


# ---- CucumberStudio --------------------------------------------------------------------------


async def test_cucumberstudio_sign_in_puts_credentials_in_headers(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    client = await serve(aiohttp_client, cucumberstudio.make_app(clock=clock))
    email = cucumberstudio.DEMO_CREDENTIALS["email"]
    body = login_body("cucumberstudio", cucumberstudio.DEMO_CREDENTIALS)
    resp = await client.post("/api/auth/sign_in", json=body)
    assert resp.status == 200
    assert await resp.json() == {"data": {"email": email, "uid": email}}
    assert resp.headers["token-type"] == "Bearer"
    assert resp.headers["uid"] == email
    assert resp.headers["access-token"]
    assert resp.headers["client"]
    assert int(resp.headers["expiry"]) == int(START) + 365 * 24 * 3600

    resp = await client.post("/api/auth/sign_in", json={**body, "password": "nope"})
    assert resp.status == 401
    assert await resp.json() == {"errors": ["Invalid login credentials. Please try again."]}


async def test_cucumberstudio_without_rotation_answers_blank_access_token(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    client = await serve(aiohttp_client, cucumberstudio.make_app(clock=clock))
    auth = await log_in(client.session, base_url(client), "cucumberstudio")
    for _ in range(2):
        resp = await client.get("/api/projects", headers=auth)
        assert resp.status == 200
        assert resp.headers["access-token"] == ""
        assert resp.headers["client"] == auth["client"]
        assert resp.headers["uid"] == auth["uid"]
        assert resp.headers["token-type"] == "Bearer"
        assert int(resp.headers["expiry"]) == int(START) + 365 * 24 * 3600
    denied = {"errors": ["You need to sign in or sign up before continuing."]}
    for broken in ({"uid": "other@example.com"}, {"client": "nope"}, {"access-token": "nope"}):
        resp = await client.get("/api/projects", headers={**auth, **broken})
        assert resp.status == 401
        assert await resp.json() == denied
    clock.advance(365 * 24 * 3600)
    assert (await client.get("/api/projects", headers=auth)).status == 401


async def test_cucumberstudio_eleventh_sign_in_evicts_the_oldest_client(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = cucumberstudio.make_app(clock=clock)
    client = await serve(aiohttp_client, app)
    base = base_url(client)
    sessions = [await log_in(client.session, base, "cucumberstudio") for _ in range(11)]
    assert len(app[cucumberstudio.STATE].clients) == 10
    assert (await client.get("/api/projects", headers=sessions[0])).status == 401
    for auth in sessions[1:]:
        assert (await client.get("/api/projects", headers=auth)).status == 200


async def test_cucumberstudio_rotation_issues_new_token_and_retires_the_old(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    settings = cucumberstudio.CucumberStudioSettings(rotate_tokens=True, token_lifetime=1000)
    client = await serve(aiohttp_client, cucumberstudio.make_app(settings, clock=clock))
    old = await log_in(client.session, base_url(client), "cucumberstudio")
    clock.advance(10)
    resp = await client.get("/api/projects", headers=old)
    assert resp.status == 200
    new = {**old, "access-token": resp.headers["access-token"]}
    assert new["access-token"] not in ("", old["access-token"])
    assert int(resp.headers["expiry"]) == int(START) + 10 + 1000

    # Within the batch window the previous token still works, rotates nothing, answers blank.
    clock.advance(4)
    resp = await client.get("/api/projects", headers=old)
    assert resp.status == 200
    assert resp.headers["access-token"] == ""

    clock.advance(2)
    assert (await client.get("/api/projects", headers=old)).status == 401
    resp = await client.get("/api/projects", headers=new)
    assert resp.status == 200
    assert resp.headers["access-token"] not in ("", new["access-token"])


# ---- emnify ----------------------------------------------------------------------------------


async def test_emnify_password_must_be_sha1(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = emnify.make_app(clock=clock)
    client = await serve(aiohttp_client, app)
    username, password = emnify.DEMO_CREDENTIALS["username"], emnify.DEMO_CREDENTIALS["password"]
    resp = await client.post(emnify.LOGIN_PATH, json={"username": username, "password": password})
    assert resp.status == 401
    body = await resp.json()
    assert body["error_code"] == 401
    assert {"error_token", "message"} <= body.keys()

    good = {"username": username, "password": sha1(password)}
    resp = await client.post(emnify.LOGIN_PATH, json=good)
    assert resp.status == 200
    data = await resp.json()
    assert set(data) == {"auth_token", "refresh_token"}
    token_claims = claims(data["auth_token"])
    assert token_claims["exp"] == int(START) + 240 * 60
    auth = {"Authorization": f"Bearer {data['auth_token']}"}
    clock.advance(240 * 60)
    assert (await client.get("/api/v1/sims", headers=auth)).status == 401


async def test_emnify_plain_password_when_not_hashed(aiohttp_client: AiohttpClient) -> None:
    client = await serve(
        aiohttp_client, emnify.make_app(emnify.EmnifySettings(password_hash="none"))
    )
    body = {"username": "demo@example.com", "password": "demo-password"}
    assert (await client.post(emnify.LOGIN_PATH, json=body)).status == 200


async def test_emnify_refresh_and_application_token_answer_only_auth_token(
    aiohttp_client: AiohttpClient,
) -> None:
    app = emnify.make_app()
    state = app[emnify.STATE]
    client = await serve(aiohttp_client, app)
    body = login_body("emnify", emnify.DEMO_CREDENTIALS)
    refresh = (await (await client.post(emnify.LOGIN_PATH, json=body)).json())["refresh_token"]
    for _ in range(2):  # the refresh token stays valid after use
        resp = await client.post(emnify.LOGIN_PATH, json={"refresh_token": refresh})
        assert resp.status == 200
        data = await resp.json()
        assert list(data) == ["auth_token"]
        auth = {"Authorization": f"Bearer {data['auth_token']}"}
        assert (await client.get("/api/v1/sims", headers=auth)).status == 200
    assert (state.logins, state.refreshes) == (1, 2)
    state.revoke_refresh_tokens()
    assert (await client.post(emnify.LOGIN_PATH, json={"refresh_token": refresh})).status == 401

    app_token = {"application_token": emnify.DEMO_CREDENTIALS["application_token"]}
    resp = await client.post(emnify.LOGIN_PATH, json=app_token)
    assert resp.status == 200
    assert list(await resp.json()) == ["auth_token"]
    assert state.logins == 2
    resp = await client.post(emnify.LOGIN_PATH, json={"application_token": "nope"})
    assert resp.status == 401


async def test_emnify_locks_after_three_failures(
    aiohttp_client: AiohttpClient, clock: FakeClock
) -> None:
    app = emnify.make_app(clock=clock)
    state = app[emnify.STATE]
    state.lock_seconds = 60
    client = await serve(aiohttp_client, app)
    good = login_body("emnify", emnify.DEMO_CREDENTIALS)
    bad = {**good, "password": sha1("wrong")}
    for _ in range(3):
        assert (await client.post(emnify.LOGIN_PATH, json=bad)).status == 401
    assert state.locked_rejections == 0
    resp = await client.post(emnify.LOGIN_PATH, json=good)
    assert resp.status == 401
    assert (await resp.json())["error_token"] == "account_locked"
    assert (state.locked_rejections, state.logins, state.login_attempts) == (1, 0, 4)
    clock.advance(59)
    assert (await client.post(emnify.LOGIN_PATH, json=good)).status == 401
    clock.advance(1)
    assert (await client.post(emnify.LOGIN_PATH, json=good)).status == 200
    assert (state.locked_rejections, state.logins) == (2, 1)


async def test_emnify_success_resets_the_failure_count(aiohttp_client: AiohttpClient) -> None:
    client = await serve(aiohttp_client, emnify.make_app())
    good = login_body("emnify", emnify.DEMO_CREDENTIALS)
    bad = {**good, "password": sha1("wrong")}
    for body in (bad, bad, good, bad, bad):
        await client.post(emnify.LOGIN_PATH, json=body)
    assert (await client.post(emnify.LOGIN_PATH, json=good)).status == 200


# ---- the demo stack --------------------------------------------------------------------------


async def test_start_emulators_serves_all_five(session: ClientSession) -> None:
    async with await start_emulators() as stack:
        assert sorted(emulator.name for emulator in stack) == sorted(NAMES)
        for name in NAMES:
            running = stack[name]
            assert set(running.demo.login.items()) <= set(DEMO[name].items())
            assert running.demo.sample_path.startswith("/")
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", running.url)
            auth = await log_in(session, running.url, name)
            async with session.get(running.url + "/some/path", headers=auth) as resp:
                assert resp.status == 200
                assert (await resp.json())["api"] == name
            state: EmulatorState = running.state
            assert (state.logins, state.requests) == (1, 1)
    with pytest.raises(ClientConnectionError):  # the sockets are closed
        await session.get(stack["cosmic"].url + "/")


async def test_state_repr_shows_no_credentials(aiohttp_client: AiohttpClient) -> None:
    for name in NAMES:
        app = MAKE_APP[name](time.time)
        client = await serve(aiohttp_client, app)
        auth = await log_in(client.session, base_url(client), name)
        await client.get("/x", headers=auth)
        shown = repr(emulator_state(app))
        secrets = [value.split()[-1] for value in auth.values()]  # drop "Bearer "/"Token "
        assert all(secret not in shown for secret in secrets)
