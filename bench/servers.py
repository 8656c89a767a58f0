"""Starts what the benchmark talks to: the upstream, and each target in front of it.

Every process is started here, tracked in a `Procs` list and stopped by its own pid at the end.
The upstream runs on the client CPU, proxies under test on the proxy CPU.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from common import (
    BENCH_DIR,
    CLIENT_CPU,
    DOWNLOAD_BYTES,
    MIB,
    PROXY_CPU,
    PYTHON,
    SMALL_BYTES,
    UPLOAD_BYTES,
    Proc,
    free_port,
    http_get,
    http_json,
    pinned,
    port_open,
    read_json_line,
    scratch_dir,
    start,
    wait_for,
)
from nginx_conf import proxy_conf, upstream_conf

ROUTE = "api"
FAR_ROUTE = "far"


@dataclass
class Target:
    """One thing to measure: where to send requests and what the client itself must send."""

    name: str
    base_url: str
    client_headers: dict[str, str]
    proc: Proc | None  # the proxy process whose CPU and memory are measured; None for direct


@dataclass
class Upstream:
    kind: str  # "nginx" or "python"
    port: int
    proc: Proc
    prefix: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logins(self) -> int:
        if self.kind == "nginx":
            log = self.prefix / "logins.log"
            return len(log.read_text().splitlines()) if log.exists() else 0
        status, body = http_get(f"{self.url}/_logins")
        if status != 200:
            raise RuntimeError("the Python upstream did not report its login count")
        return int(body)


def write_fixtures(www: Path, upload_source: Path) -> None:
    """1 KB and 100 MB bodies to download, 50 MB to upload, written in constant memory."""
    www.mkdir(parents=True, exist_ok=True)
    (www / "1k").write_bytes(b"x" * SMALL_BYTES)
    block = bytes(range(256)) * 4096  # 1 MiB of not-all-zero data
    for path, size in ((www / "100m", DOWNLOAD_BYTES), (upload_source, UPLOAD_BYTES)):
        with path.open("wb") as handle:
            for _ in range(size // MIB):
                handle.write(block)


def _nginx(name: str, prefix: Path, conf: str, port: int, cpu: str) -> Proc:
    conf_path = prefix / "nginx.conf"
    conf_path.write_text(conf)
    check = subprocess.run(  # noqa: S603 - validate first, for a readable error
        ["nginx", "-t", "-q", "-c", str(conf_path), "-p", str(prefix)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    if check.returncode != 0:
        raise RuntimeError(f"{name}: invalid nginx config: {check.stderr.strip()}")
    proc = start(
        name, pinned(cpu, ["nginx", "-c", str(conf_path), "-p", str(prefix)]), prefix / "out.log"
    )
    wait_for(lambda: port_open(port) or not proc.alive(), f"{name} to listen")
    if not proc.alive():
        raise RuntimeError(f"{name} exited; see {proc.log}")
    proc.cleanup_dirs.append(prefix)
    return proc


def start_upstream(token: str, use_nginx: bool, upload_source: Path) -> Upstream:
    prefix = scratch_dir("upstream")
    write_fixtures(prefix / "www", upload_source)
    port = free_port()
    if use_nginx:
        proc = _nginx("upstream", prefix, upstream_conf(prefix, port, token), port, CLIENT_CPU)
        return Upstream("nginx", port, proc, prefix)
    return _python_upstream("upstream", prefix, port, token)


def start_far_upstream(token: str, delay_ms: float) -> Upstream:
    """The Python upstream, answering `/1k` `delay_ms` late (nginx cannot delay an answer)."""
    return _python_upstream(
        "far-upstream", scratch_dir("far-upstream"), free_port(), token, delay_ms
    )


def _python_upstream(
    name: str, prefix: Path, port: int, token: str, delay_ms: float = 0.0
) -> Upstream:
    argv = [PYTHON, str(BENCH_DIR / "py_upstream.py"), str(port), token, str(delay_ms)]
    proc = start(name, pinned(CLIENT_CPU, argv), prefix / "out.log")
    wait_for(lambda: port_open(port), f"the Python {name} to listen")
    proc.cleanup_dirs.append(prefix)
    return Upstream("python", port, proc, prefix)


def start_nginx_proxy(upstream: Upstream, token: str) -> Target:
    prefix = scratch_dir("nginx-proxy")
    port = free_port()
    proc = _nginx("nginx", prefix, proxy_conf(prefix, port, upstream.port, token), port, PROXY_CPU)
    return Target("nginx", f"http://127.0.0.1:{port}", {}, proc)


def start_naive(
    upstream: Upstream, workdir: Path, auth_header: dict[str, str], name: str = "naive"
) -> Target:
    log = workdir / f"{name}.log"
    argv = [PYTHON, str(BENCH_DIR / "naive_proxy.py"), upstream.url]
    proc = start(name, pinned(PROXY_CPU, argv), log)
    url = str(read_json_line(log, "naive listening", proc)["url"])
    # The naive proxy knows no auth: the client sends the header and the proxy forwards it.
    return Target(name, url, auth_header, proc)


def authproxy_config(upstream: Upstream, far: Upstream | None = None, busy_poll_us: int = 0) -> str:
    routes = [(ROUTE, upstream)] + ([(FAR_ROUTE, far)] if far is not None else [])
    blocks = [
        f"""\
  {name}:
    upstream: {origin.url}
    auth:
      preset: cosmic
      email: bench@example.com
      password: bench-password
      warm: true
"""
        for name, origin in routes
    ]
    return f"""\
listen: 127.0.0.1:0
token_store: memory
upstream:
  busy_poll_us: {busy_poll_us}
routes:
{"".join(blocks)}"""


def start_authproxy(
    upstream: Upstream,
    workdir: Path,
    loop: str,
    launcher: Sequence[str] = (),
    *,
    far: Upstream | None = None,
    busy_poll_us: int = 0,
) -> Target:
    """authproxy on the proxy CPU; `launcher` goes between python and `-m authproxy` (cProfile).
    With `far`, a second route (`/far`) leads there: `far_target` names it."""
    config = workdir / "authproxy.yaml"
    config.write_text(authproxy_config(upstream, far, busy_poll_us))
    # stdout (the JSON access log) goes to a file: writing it is part of the measured cost.
    log = workdir / "authproxy.log"
    argv = [PYTHON, *launcher, "-m", "authproxy", "serve", "--config", str(config)]
    argv += ["--listen", "127.0.0.1:0", "--log-format", "json", "--loop", loop]
    proc = start("authproxy", pinned(PROXY_CPU, argv), log)
    url = str(read_json_line(log, "authproxy listening", proc)["url"])
    routes = (ROUTE, FAR_ROUTE) if far is not None else (ROUTE,)
    wait_for(
        lambda: all(token_state(url, name) == "valid" for name in routes), "authproxy's warm logins"
    )
    return Target("authproxy", f"{url}/{ROUTE}", {}, proc)


def far_target(authproxy: Target) -> Target:
    """The same authproxy process, through its route to the far upstream."""
    origin = authproxy.base_url.removesuffix(f"/{ROUTE}")
    return Target("authproxy", f"{origin}/{FAR_ROUTE}", {}, authproxy.proc)


def route_token(proxy_url: str, route: str = ROUTE) -> dict[str, object]:
    routes = http_json(f"{proxy_url}/-/status")["routes"]
    assert isinstance(routes, dict)
    token = routes[route]["token"]
    assert isinstance(token, dict)
    return token


def token_state(proxy_url: str, route: str = ROUTE) -> object:
    return route_token(proxy_url, route).get("state")


def authproxy_logins(target: Target) -> int:
    """Logins of every route of the authproxy behind `target`."""
    origin = target.base_url.rsplit("/", 1)[0]
    routes = http_json(f"{origin}/-/status")["routes"]
    assert isinstance(routes, dict)
    logins = [route["token"]["logins"] for route in routes.values()]
    assert all(isinstance(count, int) for count in logins)
    return sum(logins)
