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

from authproxy.cli.parser import ROTATION_HINT
from authproxy.cli.parser import build_parser as build_parser  # re-exported: tests, tools
from authproxy.cli.status import (
    StatusRefused,
    fetch_running_status,
    format_table,
    stored_status,
)
from authproxy.config.addresses import parse_listen
from authproxy.config.describe import describe_settings
from authproxy.config.gateway_block import refuse_unsafe_start
from authproxy.config.load import listen_of, load_settings, parse_settings, read_document
from authproxy.config.schema import config_schema
from authproxy.crypto import generate_key
from authproxy.errors import AddressInUse, ConfigError, ConfigProblem, StartupError
from authproxy.logs.setup import configure_logging
from authproxy.secrets import REGISTRY
from authproxy.server.app import Proxy
from authproxy.server.lifecycle import serve_until_signalled
from authproxy.server.supervisor import supervise
from authproxy.server.worker import bind_worker, serve_worker
from authproxy.settings import Settings

EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
# Commands whose answer is what they print: a reader that stops early ends them quietly.
ANSWERING_COMMANDS = frozenset({"check", "status", "login", "token", "schema", "keygen"})


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
        if args.command in ("login", "token"):
            return _login_or_token(args)
        if args.command == "schema":
            print(json.dumps(config_schema(), indent=2))
            return EXIT_OK
        if args.command == "keygen":
            print(generate_key())
            # On stderr: `KEY=$(authproxy keygen)` captures the key alone.
            print(ROTATION_HINT, file=sys.stderr)
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
    except BrokenPipeError:
        if args.command not in ANSWERING_COMMANDS:  # a server's log pipe gone is a failure
            print("authproxy: unexpected error: BrokenPipeError", file=sys.stderr)
            return EXIT_UNEXPECTED
        _stop_writing_stdout()  # the reader (`| head`) has what it wanted: not an error
        return EXIT_OK
    except Exception as error:  # noqa: BLE001 - the last line of defence: one line, no traceback
        print(f"authproxy: unexpected error: {type(error).__name__}", file=sys.stderr)
        return EXIT_UNEXPECTED
    return EXIT_CONFIG


def entry() -> None:
    code = main()
    try:
        sys.stdout.flush()  # a short answer is still buffered here; its reader may be gone too
    except BrokenPipeError:
        _stop_writing_stdout()
    except OSError as error:  # a full disk under `authproxy schema > file`
        _stop_writing_stdout()
        print(f"authproxy: cannot write the output: {error.strerror}", file=sys.stderr)
        code = code or EXIT_RUNTIME
    sys.exit(code)


def _stop_writing_stdout() -> None:
    # Python flushes stdout once more at exit; pointed at /dev/null that flush cannot fail.
    try:
        target = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (main() called in-process)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, target)
    os.close(devnull)


def _login_or_token(args: argparse.Namespace) -> int:
    # Warnings (an unwritable store, a refused refresh) go to stderr: stdout is the answer.
    configure_logging(level="warning", json=False, stream=sys.stderr)
    from authproxy.cli.login import login_command, token_command

    if args.command == "login":
        return asyncio.run(login_command(args.config, args.route, force=args.force))
    return asyncio.run(token_command(args.config, args.route, as_json=args.json))


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
    try:
        document = fetch_running_status(listen)
        silence, proxy_said = f"no proxy answered at {listen}", f"none answered at {listen}"
    except StatusRefused as refused:
        document = None
        proxy_said = f"refused /-/status at {listen} ({refused.status})"
        silence = (
            f"the proxy at {listen} refused /-/status ({refused.status}): with clients it needs "
            "an admin client's key"
        )
    if document is not None:
        document["source"] = f"running proxy at {listen}"
    else:
        print(f"authproxy: {silence}; reading the token store", file=sys.stderr)
        if isinstance(settings, ConfigError):
            raise settings
        document = asyncio.run(stored_status(settings, time.time()))
        document["proxy"] = proxy_said
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
