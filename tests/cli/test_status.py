"""`authproxy status` as a user meets it: asking needs no credentials, silence is said."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import aiohttp
from proc import run_cli, start_proxy

UNSET = "AUTHPROXY_TEST_STATUS_UNSET"


def config_for(tmp_path: Path, port: int) -> Path:
    """A config whose credentials come from a variable this shell does not set."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntoken_store: {tmp_path / 'tokens.json'}\n"
        "routes:\n  emnify:\n    upstream: http://127.0.0.1:1\n"
        f"    auth: {{preset: emnify, username: me, password: ${{{UNSET}}}}}\n"
    )
    return config


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_asking_a_running_proxy_needs_no_credentials(tmp_path: Path) -> None:
    proxy = await start_proxy("demo", "--listen", "127.0.0.1:0")
    try:
        port = int(proxy.url.rsplit(":", 1)[1])
        async with aiohttp.ClientSession() as client, client.get(f"{proxy.url}/emnify/x") as ok:
            assert ok.status == 200
        code, out, err = await run_cli(
            "status", "--json", "--config", str(config_for(tmp_path, port))
        )
    finally:
        assert await proxy.stop() == 0
    assert code == 0, err
    document = json.loads(out)
    assert document["source"] == f"running proxy at 127.0.0.1:{port}"
    assert document["routes"]["emnify"]["token"]["state"] == "valid"
    assert UNSET not in err


async def test_with_no_proxy_it_says_so_and_reads_the_store(tmp_path: Path) -> None:
    port = free_port()
    config = config_for(tmp_path, port)
    code, out, err = await run_cli("status", "--config", str(config), env={UNSET: "pw-status-1"})
    assert code == 0, err
    assert f"no proxy answered at 127.0.0.1:{port}" in err
    assert out.splitlines()[:2] == [
        f"source: token store ({tmp_path / 'tokens.json'})",
        f"proxy: none answered at 127.0.0.1:{port}",
    ]
    assert "pw-status-1" not in out + err


async def test_with_no_proxy_the_store_needs_the_credentials(tmp_path: Path) -> None:
    port = free_port()
    code, out, err = await run_cli("status", "--config", str(config_for(tmp_path, port)))
    assert code == 2
    assert out == ""
    assert err.splitlines()[0] == (
        f"authproxy: no proxy answered at 127.0.0.1:{port}; reading the token store"
    )
    assert f"environment variable {UNSET} is not set" in err


async def test_a_gateway_that_refuses_status_is_not_called_silent(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\ntoken_store: {tmp_path / 'tokens.json'}\n"
        "clients:\n  alice: {key: alice-key-0123456789abcdef}\n"
        "routes:\n  plain:\n    upstream: http://127.0.0.1:1\n"
    )
    proxy = await start_proxy("serve", "--config", str(config))
    try:
        code, out, err = await run_cli("status", "--config", str(config))
    finally:
        assert await proxy.stop() == 0
    assert code == 0, err
    assert err.splitlines()[0] == (
        f"authproxy: the proxy at 127.0.0.1:{port} refused /-/status (401): with clients it "
        "needs an admin client's key; reading the token store"
    )
    assert f"proxy: refused /-/status at 127.0.0.1:{port} (401)" in out
    assert "alice-key-0123456789abcdef" not in out + err
