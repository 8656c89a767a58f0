"""`authproxy serve --workers N`: real processes on one real port, one upstream login.

The supervisor runs as a subprocess and its workers as its children; the upstreams run in this
process, so the emulator's login counter is the ground truth (helpers in tests/supervised.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from pathlib import Path

import aiohttp
from proc import run_cli
from supervised import (
    BOUND,
    get,
    is_event,
    many,
    reloaded_by,
    served_by,
    supervisor,
    upstreams,
    write_config,
)


async def test_two_workers_answer_a_hundred_first_requests_with_one_login(tmp_path: Path) -> None:
    async with upstreams(login_delay=0.5) as ups:
        store = tmp_path / "state" / "tokens.json"
        config = write_config(tmp_path / "c.yaml", ups, str(store))
        async with supervisor(config) as running:
            statuses = await many(running.url, [f"/cosmic/v1/buckets/{i}" for i in range(100)])
            assert statuses == [200] * 100
            assert ups.state.login_attempts == 1
            # Both workers served: the kernel spread the connections over their sockets.
            await running.wait_for("worker 0 serving", lambda e: served_by(e) and e["worker"] == 0)
            await running.wait_for("worker 1 serving", lambda e: served_by(e) and e["worker"] == 1)
            assert await running.exit_code() == 0
        starts = running.matching(lambda e: is_event(e, "authproxy listening"))
        assert len(starts) == 1
        assert starts[0]["workers"] == 2
        assert starts[0]["url"].startswith("http://127.0.0.1:")
        assert not starts[0]["url"].endswith(":0")
        assert store.exists()
        assert (store.parent / "tokens.json.lock").exists()
        assert len(running.matching(lambda e: is_event(e, "token obtained"))) == 1


async def test_sighup_reloads_the_config_in_every_worker(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory")
        async with supervisor(config) as running:
            warnings = running.matching(lambda e: "one login per worker" in e.get("event", ""))
            assert len(warnings) == 1
            assert set(await many(running.url, ["/extra/x"] * 10)) == {404}
            write_config(config, ups, "memory", extra_route=True)
            running.process.send_signal(signal.SIGHUP)
            for index in (0, 1):
                await running.wait_for(f"worker {index} reloaded", reloaded_by(index))
            assert await many(running.url, ["/extra/x"] * 20) == [200] * 20
            assert await running.exit_code() == 0


async def test_sigterm_lets_in_flight_requests_finish_and_exits_0(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"))
        async with supervisor(config) as running:
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            async with aiohttp.ClientSession(connector=connector) as client:
                loop = asyncio.get_running_loop()
                in_flight = [
                    loop.create_task(get(client, f"{running.url}/plain/slow"), name=f"slow-{i}")
                    for i in range(10)
                ]
                for _ in range(int(BOUND * 100)):
                    if ups.slow_arrivals == 10:
                        break
                    await asyncio.sleep(0.01)
                assert ups.slow_arrivals == 10
                running.process.send_signal(signal.SIGTERM)
                await running.wait_for(
                    "both workers shutting down",
                    lambda e: e.get("event") == "shutting down",
                    count=2,
                )
                ups.release.set()
                answers = await asyncio.wait_for(asyncio.gather(*in_flight), BOUND)
            assert answers == [(200, "finished")] * 10
            assert await running.exit_code(signum=None) == 0


async def test_a_killed_worker_is_restarted_and_serving_continues(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"))
        async with supervisor(config) as running:
            assert await many(running.url, ["/cosmic/a"]) == [200]
            await running.wait_for("token stored", lambda e: is_event(e, "token obtained"))
            killed = running.worker_pid(0)
            os.kill(killed, signal.SIGKILL)
            await running.wait_for(
                "the death logged", lambda e: is_event(e, "worker exited unexpectedly", worker=0)
            )
            await running.wait_for(
                "the restart", lambda e: is_event(e, "worker restarted", worker=0)
            )
            await running.wait_for(
                "the new worker 0 listening",
                lambda e: is_event(e, "worker listening", worker=0),
                count=2,
            )
            assert running.worker_pid(0, nth=2) != killed
            restarted_at = len(running.events)
            assert await many(running.url, [f"/cosmic/b/{i}" for i in range(40)]) == [200] * 40
            await running.wait_for(
                "the new worker 0 serving",
                lambda e: served_by(e) and e["worker"] == 0,
                since=restarted_at,
            )
            # The new worker took the token from the file: no second login.
            assert ups.state.login_attempts == 1
            assert await running.exit_code() == 0


async def test_a_worker_that_keeps_dying_stops_everything_with_exit_1(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, str(tmp_path / "tokens.json"))
        async with supervisor(config) as running:
            for nth in range(1, 5):
                await running.wait_for(
                    f"worker 1 start #{nth}",
                    lambda e: is_event(e, "worker listening", worker=1),
                    count=nth,
                )
                os.kill(running.worker_pid(1, nth), signal.SIGKILL)
            assert await running.exit_code(signum=None) == 1
        assert running.matching(lambda e: is_event(e, "a worker keeps dying; stopping all workers"))
        assert "authproxy: worker 1 exited 4 times within 60 s" in "\n".join(running.lines)
        deaths = running.matching(lambda e: is_event(e, "worker exited unexpectedly", worker=1))
        assert [death["exit"] for death in deaths] == ["killed by SIGKILL"] * 4
        # Worker 0 was stopped gracefully, not left behind.
        assert running.matching(lambda e: is_event(e, "stopped", worker=0))


async def test_the_port_of_a_running_supervisor_is_not_shared(tmp_path: Path) -> None:
    async with upstreams() as ups:
        config = write_config(tmp_path / "c.yaml", ups, "memory")
        async with supervisor(config) as running:
            taken = running.url.removeprefix("http://")
            for workers in ("2", "1"):
                code, _out, err = await run_cli(
                    "serve", "--config", str(config), "--listen", taken, "--workers", workers
                )
                assert code == 1
                assert f"cannot listen on {taken}: address already in use" in err
            assert await running.exit_code() == 0


async def test_a_port_in_use_fails_the_start_with_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("token_store: memory\nroutes:\n  a:\n    upstream: http://127.0.0.1:9\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        code, _out, err = await run_cli(
            "serve", "--config", str(config), "--listen", taken, "--workers", "2"
        )
    assert code == 1
    assert err.startswith(f"authproxy: cannot listen on {taken}: address already in use; ")
    assert "--listen" in err  # and how to choose another port


async def test_workers_must_be_from_1_to_64(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("routes:\n  a:\n    upstream: http://127.0.0.1:9\n")
    for value in ("0", "65", "two", "-1"):
        code, _out, err = await run_cli("serve", "--config", str(config), "--workers", value)
        assert code == 2, value
        assert "--workers: must be a whole number from 1 to 64" in err
    code, out, _err = await run_cli("serve", "--help")
    assert code == 0
    assert "--workers N" in out
    assert "/-/status and /-/metrics show the sum of all workers" in " ".join(out.split())
    assert "--worker-index" not in out
