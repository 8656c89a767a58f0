"""`authproxy demo`: the proxy in front of built-in emulators of the APIs; no config needed.

The demo config goes through the same loader as a user's YAML, so what the demo shows is what a
config file gets.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from authproxy.config.addresses import parse_listen
from authproxy.config.load import parse_settings
from authproxy.emulators import DEMOS
from authproxy.emulators.demo_stack import EmulatorStack, start_emulators
from authproxy.errors import ConfigError, ConfigProblem, StartupError
from authproxy.server.app import Proxy
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.settings import Settings

DEFAULT_LISTEN = "127.0.0.1:8080"
# `--emulators-only` puts the first emulator here and the others on the ports after it.
DEFAULT_PORT_BASE = 8081


def demo_settings(stack: EmulatorStack, listen: str) -> Settings:
    routes: dict[str, object] = {}
    for emulator in stack:
        routes[emulator.name] = {
            "upstream": emulator.url,
            "auth": {"preset": emulator.name, **emulator.demo.login},
        }
    try:
        address = parse_listen(listen)
    except ValueError as error:
        raise ConfigError("--listen", [ConfigProblem("--listen", str(error))]) from None
    document = {
        "listen": str(address),
        "token_store": "memory",
        "routes": routes,
    }
    return parse_settings(document, source="demo", environ={})


def print_banner(url: str, stack: EmulatorStack) -> None:
    lines = [
        "",
        f"authproxy demo: emulated APIs behind {url} (no credentials needed):",
        *(f"  curl {url}/{emulator.name}{emulator.demo.sample_path}" for emulator in stack),
        f"  curl {url}/-/status",
        "",
        *emulator_lines(stack),
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def emulator_lines(stack: EmulatorStack) -> list[str]:
    """Where each emulator listens and the demo credentials it accepts, as config routes.

    Demo credentials are throwaway values every copy of authproxy knows, not secrets: they are
    shown so that a user can point a config of their own at the emulators.
    """
    lines = ["The emulators, as routes of a config of your own (demo credentials, not secrets):"]
    lines.append("routes:")
    for emulator in stack:
        fields = ", ".join(f"{key}: {value}" for key, value in emulator.demo.login.items())
        lines.append(f"  {emulator.name}:")
        lines.append(f"    upstream: {emulator.url}")
        lines.append(f"    auth: {{preset: {emulator.name}, {fields}}}")
    return [*lines, ""]


async def run_demo(listen: str | None) -> None:
    stack = await start_emulators()
    try:
        proxy = Proxy(demo_settings(stack, listen or DEFAULT_LISTEN))
        await serve_until_signalled(proxy, on_started=lambda: print_banner(proxy.urls[0], stack))
    finally:
        await stack.close()


async def run_emulators(port_base: int) -> None:
    """The emulators alone, on fixed ports from `port_base`, until SIGINT or SIGTERM."""
    try:
        stack = await start_emulators(port_base=port_base)
    except OSError as error:
        last = port_base + len(DEMOS) - 1
        raise StartupError(
            f"cannot listen on ports {port_base}-{last}: {error.strerror}; "
            "choose others with --port-base N"
        ) from None
    try:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        lines = [
            f"authproxy demo: emulators only, on ports {port_base}-{port_base + len(DEMOS) - 1}."
        ]
        lines += ["", *emulator_lines(stack), "Press Ctrl-C to stop.", ""]
        print("\n".join(lines), file=sys.stderr, flush=True)
        await stop.wait()
    finally:
        await stack.close()
