"""The `authproxy` command line: its commands, options and help texts (argparse)."""

from __future__ import annotations

import argparse

from authproxy import __version__
from authproxy.server.supervisor import MAX_WORKERS

ROTATION_HINT = (
    "To rotate a key without a new login: list the new key first and keep the old one, "
    "token_store_key: [NEW, OLD], and restart every process; once all run with both, "
    "drop OLD and restart again."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authproxy",
        description="A local authenticating reverse proxy: it logs in to upstream APIs with "
        "stored credentials, keeps their tokens fresh and injects them into every request.",
    )
    parser.add_argument("--version", action="version", version=f"authproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the proxy with a config file")
    serve.add_argument("--config", "-c", required=True, metavar="PATH", help="YAML config file")
    _add_runtime_options(serve, listen_default="the config's listen, else 127.0.0.1:8080")
    serve.add_argument(
        "--workers",
        type=_worker_count,
        default=1,
        metavar="N",
        help=f"processes serving the same port (1-{MAX_WORKERS}, default: 1); they share tokens "
        "through token_store, so N workers log in once (token_store: memory: once each), and "
        "rate limits. /-/status and /-/metrics show the sum of all workers",
    )
    # Set by the supervisor of `--workers N` on each worker it starts (see server/worker.py).
    serve.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    serve.add_argument("--supervisor-fd", type=int, help=argparse.SUPPRESS)

    check = commands.add_parser("check", help="validate a config file and exit (2 when invalid)")
    check.add_argument("--config", "-c", required=True, metavar="PATH", help="YAML config file")
    check.add_argument(
        "--expand", action="store_true", help="print each route's effective flow, secrets masked"
    )

    status = commands.add_parser(
        "status", help="show each route's token state (from the running proxy, else the store)"
    )
    status.add_argument("--config", "-c", required=True, metavar="PATH", help="YAML config file")
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")

    login = commands.add_parser(
        "login",
        help="log in to one route now and keep the token for the proxy (checks a password)",
        description="Log in to ROUTE now, as the proxy would, and keep the token in the token "
        "store, so that a proxy on the same file or Redis uses it. Prints the outcome and the "
        "token's lifetime, never the token. Exit 0: logged in; 1: rejected or failed (with the "
        "upstream's status), or held off after a recent rejection; 2: config error.",
    )
    login.add_argument("route", metavar="ROUTE", help="the route's name in the config")
    login.add_argument("--config", "-c", required=True, metavar="PATH", help="YAML config file")
    login.add_argument(
        "--force",
        action="store_true",
        help="try even during the hold after a rejected login (may lock an account)",
    )

    token = commands.add_parser(
        "token",
        help="print the auth headers the proxy would inject now (prints a secret)",
        description="Print the header lines the proxy would inject into a request to ROUTE "
        "now, logging in if needed: for tools that cannot go through an HTTP proxy (gRPC "
        "clients, SDKs, notebooks). This is the one command that prints a secret, because "
        "that is what it is asked for: keep its output out of logs and shell history.",
    )
    token.add_argument("route", metavar="ROUTE", help="the route's name in the config")
    token.add_argument("--config", "-c", required=True, metavar="PATH", help="YAML config file")
    token.add_argument("--json", action="store_true", help="print JSON: headers and expiry")

    commands.add_parser(
        "schema",
        help="print the config's JSON Schema (draft 2020-12), for editors and CI",
        description="Print the JSON Schema of the config file. It checks keys and the types "
        "of values; `authproxy check` checks everything else. config.example.yaml points "
        "editors at a copy of it, docs/config.schema.json.",
    )

    commands.add_parser(
        "keygen",
        help="print a new key for token_store_key (encrypts stored tokens)",
        description="Print a new random Fernet key. Keep it like a password; give it to the "
        "proxy as token_store_key: ${AUTHPROXY_TOKEN_KEY} (or ${file:...}). " + ROTATION_HINT,
    )

    demo = commands.add_parser(
        "demo", help="run the proxy in front of built-in emulators of the five supported APIs"
    )
    _add_runtime_options(demo, listen_default="127.0.0.1:8080")
    demo.add_argument(
        "--emulators-only",
        action="store_true",
        help="run only the emulators, on fixed ports, to point a config of your own at them; "
        "it prints each one's URL and demo credentials",
    )
    demo.add_argument(
        "--port-base",
        type=_port_base,
        metavar="N",
        help="with --emulators-only: the first emulator's port; the others take the ports "
        "after it (default: 8081)",
    )
    return parser


def _port_base(text: str) -> int:
    port = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= port <= 65535 - 8:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65527, not {text!r}")
    return port


def _add_runtime_options(parser: argparse.ArgumentParser, listen_default: str) -> None:
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help=f"address to listen on (default: {listen_default}); a port alone means "
        "127.0.0.1:PORT; port 0 picks a free port and logs it; unix:/PATH listens on a Unix "
        "socket",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=("debug", "info", "warning", "error"),
        help="least severe log level shown (default: info)",
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=("auto", "json", "console"),
        help="JSON lines, or readable console output (default: console on a terminal)",
    )
    parser.add_argument(
        "--loop",
        default="auto",
        choices=("auto", "asyncio", "uvloop"),
        help="event loop (default: uvloop when installed, else asyncio)",
    )


def _worker_count(text: str) -> int:
    count = int(text) if text.isascii() and text.isdigit() else 0
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_WORKERS}, not {text!r}"
        )
    return count
