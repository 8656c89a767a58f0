"""`authproxy login` and `authproxy token`, as real processes against the emnify emulator.

The emulator counts login attempts, so each test can tell whether a proxy on the same store
used the grant the command kept, and whether a hold after a rejection kept a login from being
tried at all.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from proc import run_cli, start_proxy
from redis_server import RedisServer, running_redis

from authproxy.emulators.common import EmulatorState
from authproxy.emulators.demo_stack import EmulatorStack, start_emulators

PASSWORD = "demo-password"
ENV = {"LOGIN_TEST_PASSWORD": PASSWORD}
WRONG = {"LOGIN_TEST_PASSWORD": "wrong-password-1234"}


@pytest.fixture
async def stack() -> AsyncIterator[EmulatorStack]:
    async with await start_emulators() as emulators:
        yield emulators


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


def emnify(stack: EmulatorStack) -> EmulatorState:
    return stack["emnify"].state


def write_config(tmp_path: Path, stack: EmulatorStack, store: str | None = None) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"token_store: {store or tmp_path / 'tokens.json'}\n"
        "routes:\n"
        "  emnify:\n"
        f"    upstream: {stack['emnify'].url}\n"
        "    auth: {preset: emnify, username: demo@example.com, "
        "password: ${LOGIN_TEST_PASSWORD}}\n"
        "  plain:\n"
        f"    upstream: {stack['emnify'].url}\n"
        "  static:\n"
        f"    upstream: {stack['emnify'].url}\n"
        "    auth: {credentials: {key: k-123456}, inject: {headers: {X-Key: '{key}'}}}\n"
    )
    return config


async def get(url: str) -> int:
    async with aiohttp.ClientSession() as client, client.get(url) as answer:
        return answer.status


async def one_request_through_a_proxy(config: Path, env: dict[str, str]) -> int:
    """A fresh `authproxy serve` on `config` for one request to emnify: its status."""
    proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0", env=env)
    try:
        return await get(f"{proxy.url}/emnify/api/v1/endpoint")
    finally:
        assert await proxy.stop() == 0


async def test_login_keeps_the_token_for_a_proxy_on_the_same_file(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stack)
    code, out, err = await run_cli("login", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    assert out.startswith("emnify: logged in; the token expires at ")
    # 240 minutes, told as a JWT `exp` in whole seconds: a second either side of 4 hours.
    assert re.search(r"\(in (3h 59m|4h 0m)\)", out), out
    assert "kept in the token store" in out
    assert emnify(stack).logins == 1
    token = emnify(stack).tokens._expiry.copy()
    assert not any(value in out + err for value in token)
    assert PASSWORD not in out + err
    assert await one_request_through_a_proxy(config, ENV) == 200
    assert emnify(stack).logins == 1  # the proxy used the token login kept


async def test_token_prints_the_headers_the_proxy_would_inject(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stack)
    code, out, err = await run_cli("token", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    (line,) = out.splitlines()
    name, _, value = line.partition(": ")
    assert name == "Authorization"
    assert value.startswith("Bearer ")
    # What it printed is what the API accepts, sent by a client that knows nothing of authproxy.
    headers = {"Authorization": value}
    async with (
        aiohttp.ClientSession() as client,
        client.get(f"{stack['emnify'].url}/api/v1/endpoint", headers=headers) as answer,
    ):
        assert answer.status == 200
    code, out, err = await run_cli("token", "emnify", "--json", "--config", str(config), env=ENV)
    assert code == 0, err
    document = json.loads(out)
    assert document["headers"] == {"Authorization": value}  # the kept token, no second login
    assert document["expires_at"].endswith("Z")
    assert emnify(stack).logins == 1
    code, out, _ = await run_cli("token", "--help")
    assert "prints a secret" in " ".join(out.split())


async def test_a_rejection_holds_logins_until_forced(stack: EmulatorStack, tmp_path: Path) -> None:
    config = write_config(tmp_path, stack)
    code, out, err = await run_cli("login", "emnify", "--config", str(config), env=WRONG)
    assert code == 1
    assert out == ""
    assert "emnify: login rejected (upstream status 401)" in err
    assert "held for 5m 0s" in err
    assert emnify(stack).login_attempts == 1
    for command in ("login", "token"):
        code, _, err = await run_cli(command, "emnify", "--config", str(config), env=WRONG)
        assert code == 1
        assert "a login was rejected at " in err
        assert "(upstream status 401); logins are held until " in err
        assert "authproxy login --force tries now" in err
    assert emnify(stack).login_attempts == 1  # held: nothing was sent
    code, _, err = await run_cli("login", "emnify", "--force", "--config", str(config), env=WRONG)
    assert code == 1
    assert emnify(stack).login_attempts == 2
    # Right credentials are stored under another name: no hold on them.
    code, _, err = await run_cli("login", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    assert "wrong-password-1234" not in err


async def test_a_hold_recorded_by_a_running_proxy_is_honoured(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stack)
    assert await one_request_through_a_proxy(config, WRONG) == 502
    assert emnify(stack).login_attempts == 1
    code, _, err = await run_cli("login", "emnify", "--config", str(config), env=WRONG)
    assert code == 1
    assert "a login was rejected at " in err
    # A proxy started during the hold waits it out too: a restart loop never retries it.
    assert await one_request_through_a_proxy(config, WRONG) == 502
    assert emnify(stack).login_attempts == 1


async def test_login_shares_the_token_through_redis(
    stack: EmulatorStack, tmp_path: Path, redis: RedisServer
) -> None:
    config = write_config(tmp_path, stack, store=redis.url)
    code, out, err = await run_cli("login", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    assert "kept in the token store" in out
    assert await one_request_through_a_proxy(config, ENV) == 200
    assert emnify(stack).logins == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("nope", "ROUTE: no route named 'nope'; routes: emnify, plain, static"),
        ("plain", "routes.plain: has no login: no auth block"),
        ("static", "routes.static: has no login: static credentials only"),
    ],
)
async def test_a_route_without_a_login_is_a_config_error(
    route: str, message: str, stack: EmulatorStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stack)
    code, _, err = await run_cli("login", route, "--config", str(config), env=ENV)
    assert code == 2
    assert message in err
    assert emnify(stack).login_attempts == 0


async def test_a_failed_login_names_the_upstream_status(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    emnify(stack).fail_logins_with = 503
    config = write_config(tmp_path, stack)
    code, _, err = await run_cli("login", "emnify", "--config", str(config), env=ENV)
    assert code == 1
    assert "emnify: login failed (upstream status 503)" in err


async def test_token_prints_static_credentials_as_injected(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, stack)
    code, out, err = await run_cli("token", "static", "--config", str(config), env=ENV)
    assert code == 0, err
    assert out == "X-Key: k-123456\n"
    code, _, err = await run_cli("token", "plain", "--config", str(config), env=ENV)
    assert code == 2
    assert "routes.plain: has no login: no auth block" in err


async def test_a_running_proxy_on_the_file_takes_up_what_login_kept(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    """One process on the token file: it takes up the token login wrote, and its own writes
    keep the tokens login wrote for routes it has not used yet."""
    config = write_config(tmp_path, stack)
    cosmic = stack["cosmic"]
    config.write_text(
        config.read_text() + f"  cosmic:\n    upstream: {cosmic.url}\n"
        "    auth: {preset: cosmic, email: demo@example.com, password: demo-password}\n"
    )
    proxy = await start_proxy("serve", "--config", str(config), "--listen", "127.0.0.1:0", env=ENV)
    try:
        for route in ("emnify", "cosmic"):
            code, _, err = await run_cli("login", route, "--config", str(config), env=ENV)
            assert code == 0, err
        assert await get(f"{proxy.url}/emnify/api/v1/endpoint") == 200
    finally:
        assert await proxy.stop() == 0
    assert emnify(stack).logins == 1  # the proxy used the token login kept
    assert "using a token another process stored" in proxy.text
    code, _, err = await run_cli("token", "cosmic", "--config", str(config), env=ENV)
    assert code == 0, err
    assert cosmic.state.logins == 1  # still in the file after the proxy wrote it


async def test_status_and_token_find_a_token_kept_under_the_older_key(
    stack: EmulatorStack, tmp_path: Path
) -> None:
    """Mid-rotation (`token_store_key: [new, old]`), the store is read as `serve` reads it."""
    old, new = (run_cli("keygen") for _ in range(2))
    old_key = (await old)[1].strip()
    new_key = (await new)[1].strip()
    config = write_config(tmp_path, stack)
    base = config.read_text()
    config.write_text(f"token_store_key: {old_key}\n{base}")
    code, _, err = await run_cli("login", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    config.write_text(f"token_store_key: [{new_key}, {old_key}]\n{base}")
    tokens = tmp_path / "tokens.json"
    before = tokens.read_bytes()
    code, out, err = await run_cli("status", "--json", "--config", str(config), env=ENV)
    assert code == 0, err
    assert json.loads(out)["routes"]["emnify"]["token"]["state"] == "valid"
    assert tokens.read_bytes() == before  # asking moved nothing: a proxy on the old key may run
    code, _, err = await run_cli("token", "emnify", "--config", str(config), env=ENV)
    assert code == 0, err
    assert emnify(stack).logins == 1  # `token` found it, and logged in no more
    assert old_key not in out + err
    assert new_key not in out + err
