"""The `authproxy` command: `main(argv) -> int` is the only code that decides exit codes.

Exit codes: 0 success, 1 runtime failure (cannot start), 2 config or usage error, 3 unexpected
error, 130 interrupted before start-up finished.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import replace
from typing import Any

from authproxy import __version__
from authproxy.cli.status import fetch_running_status, format_table, stored_status
from authproxy.config.describe import describe_settings
from authproxy.config.gateway_block import refuse_unsafe_start
from authproxy.config.load import (
    listen_of,
    load_settings,
    parse_listen,
    parse_settings,
    read_document,
)
from authproxy.config.schema import config_schema
from authproxy.crypto import generate_key
from authproxy.errors import AddressInUse, ConfigError, ConfigProblem, StartupError
from authproxy.logs.setup import configure_logging
from authproxy.secrets import REGISTRY
from authproxy.server.app import Proxy
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.server.supervisor import MAX_WORKERS, supervise
from authproxy.server.worker import bind_worker, serve_worker
from authproxy.settings import Settings

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


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
        "through token_store, so N workers log in once (token_store: memory: once each). "
        "/-/status and /-/metrics describe the worker that answers",
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
        "proxy as token_store_key: ${AUTHPROXY_TOKEN_KEY} (or ${file:...}).",
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
        "127.0.0.1:PORT; port 0 picks a free port and logs it",
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "serve" and (args.worker_index is None) != (args.supervisor_fd is None):
        parser.error("--worker-index and --supervisor-fd go together (set by --workers)")
    try:
        if args.command == "check":
            return _check(args.config, expand=args.expand)
        if args.command == "status":
            return _status(args.config, as_json=args.json)
        if args.command == "schema":
            print(json.dumps(config_schema(), indent=2))
            return EXIT_OK
        if args.command == "keygen":
            print(generate_key())
            return EXIT_OK
        as_json = {"auto": None, "json": True, "console": False}[args.log_format]
        configure_logging(level=args.log_level, json=as_json)
        if args.command == "serve":
            if args.worker_index is not None:
                bind_worker(args.worker_index)
            settings = _with_listen(load_settings(args.config), args.listen)
            # The loader checked the start-up rules on the file's `listen`; `--listen` may name
            # another address, so they are checked here once more, on the one to be bound, for
            # a single process and for every worker alike. (A reload is checked by Proxy.reload.)
            refuse_unsafe_start(settings, settings.listen)

            def reread() -> Settings:
                return _with_listen(load_settings(args.config), args.listen)

            if args.worker_index is not None:
                fd = args.supervisor_fd
                return _run(lambda: serve_worker(settings, args.workers, reread, fd), args.loop)
            if args.workers > 1:
                # The supervisor only starts and watches processes: the default loop will do.
                return _run(
                    lambda: supervise(settings, args.workers, _worker_command(args)), "asyncio"
                )
            return _run(lambda: _serve(settings, reread), args.loop)
        if args.command == "demo":
            # Imported here: the emulators (and PyJWT, which they issue tokens with) are the
            # demo's alone, and a proxy never loads them.
            from authproxy.cli.demo import DEFAULT_PORT_BASE, run_demo, run_emulators

            if args.port_base is not None and not args.emulators_only:
                parser.error("--port-base goes with --emulators-only")
            if args.emulators_only:
                base = args.port_base or DEFAULT_PORT_BASE
                return _run(lambda: run_emulators(base), args.loop)
            return _run(lambda: run_demo(args.listen), args.loop)
    except ConfigError as error:
        print(f"authproxy: {REGISTRY.scrub(str(error))}", file=sys.stderr)
        return EXIT_CONFIG
    except AddressInUse as error:
        print(f"authproxy: {error}; {_other_port_hint(args.command)}", file=sys.stderr)
        return EXIT_RUNTIME
    except StartupError as error:
        print(f"authproxy: {REGISTRY.scrub(str(error))}", file=sys.stderr)
        return EXIT_RUNTIME
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        print(f"authproxy: unexpected error: {type(error).__name__}", file=sys.stderr)
        return EXIT_UNEXPECTED
    return EXIT_CONFIG


def entry() -> None:
    sys.exit(main())


def _other_port_hint(command: str) -> str:
    """How to pick another port: the port is often taken by another program, or a second demo."""
    if command == "demo":
        return "choose another port: --listen 127.0.0.1:9000 (make run LISTEN=127.0.0.1:9000)"
    return "choose another port: --listen 127.0.0.1:9000, or the config's listen"


def _worker_command(args: argparse.Namespace) -> list[str]:
    """How the supervisor starts a worker: this command, minus --listen (it adds the port)."""
    return [
        sys.executable,
        "-m",
        "authproxy",
        "serve",
        "--config",
        os.path.abspath(args.config),
        "--workers",
        str(args.workers),
        "--log-level",
        args.log_level,
        "--log-format",
        args.log_format,
        "--loop",
        args.loop,
    ]


def _with_listen(settings: Settings, listen: str | None) -> Settings:
    """`settings` on the address `--listen` names, when it names one."""
    if listen is None:
        return settings
    try:
        return replace(settings, listen=parse_listen(listen))
    except ValueError as error:
        raise ConfigError("--listen", [ConfigProblem("--listen", str(error))]) from None


def _check(path: str, *, expand: bool) -> int:
    settings = load_settings(path)
    if expand:
        print(json.dumps(describe_settings(settings), indent=2))
    else:
        count = len(settings.routes)
        print(f"{path}: OK ({count} route{'s' if count != 1 else ''})")
    return EXIT_OK


def _status(path: str, *, as_json: bool) -> int:
    """Ask the proxy at the config's `listen`; only when none answers, read the token store.

    Asking needs only `listen`: a credential variable unset in this shell is no reason to
    fail. Reading the store needs them all (tokens are stored under names made from them).
    """
    data = read_document(path)
    listen = listen_of(data, source=path, environ=os.environ)
    try:
        # Read first in any case: whatever secrets resolve are registered, so that an older
        # proxy's answer is masked too (cli/status.py).
        settings: Settings | ConfigError = parse_settings(data, source=path, environ=os.environ)
    except ConfigError as error:
        settings = error
    document = fetch_running_status(listen)
    if document is not None:
        document["source"] = f"running proxy at {listen}"
    else:
        print(f"authproxy: no proxy answered at {listen}; reading the token store", file=sys.stderr)
        if isinstance(settings, ConfigError):
            raise settings
        document = asyncio.run(stored_status(settings, time.time()))
        document["proxy"] = f"none answered at {listen}"
    print(json.dumps(document, indent=2) if as_json else format_table(document))
    return EXIT_OK


def _run(start: Callable[[], Coroutine[Any, Any, None]], loop: str) -> int:
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        runner.run(start())
    return EXIT_OK


def _loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop when installed (the `speed` extra) unless `--loop asyncio`; None is asyncio's own."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartupError("--loop uvloop: uvloop is not installed") from None
        return None
    return uvloop.new_event_loop


async def _serve(settings: Settings, reread: Callable[[], Settings]) -> None:
    await serve_until_signalled(Proxy(settings), reload=reread)
