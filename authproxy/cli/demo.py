"""`authproxy demo`: the proxy in front of built-in emulators of the APIs; no config needed.

The demo config goes through the same loader as a user's YAML, so what the demo shows is what a
config file gets.
"""

from __future__ import annotations

import sys

from authproxy.config.load import parse_listen, parse_settings
from authproxy.emulators.demo_stack import EmulatorStack, start_emulators
from authproxy.errors import ConfigError, ConfigProblem
from authproxy.server.app import Proxy
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.settings import Settings

DEFAULT_LISTEN = "127.0.0.1:8080"


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
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


async def run_demo(listen: str | None) -> None:
    stack = await start_emulators()
    try:
        proxy = Proxy(demo_settings(stack, listen or DEFAULT_LISTEN))
        await serve_until_signalled(proxy, on_started=lambda: print_banner(proxy.urls[0], stack))
    finally:
        await stack.close()
