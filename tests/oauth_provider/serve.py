"""Serve django-oauth-toolkit on two loopback ports: its endpoints on one, an API on the other.

`python serve.py DIR`: migrates a sqlite database in DIR, creates the clients and a user, binds
both ports, prints one JSON line (the ports, client ids and secrets, the user), then serves until
its standard input closes. Each request is appended to DIR/requests.jsonl: which server, path,
grant type, form field names, how the client authenticated, a fingerprint of the Bearer token,
and the status. That log is what the tests read to see what the proxy sent where; no secret
value is written to it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# name -> (grant type, confidential); "short" gets tokens of four seconds (settings.LIFETIMES).
CLIENTS = {
    "service": ("client-credentials", True),
    "short": ("client-credentials", True),
    "app": ("password", True),
    "mobile": ("password", False),
}
# Credentials are masked in every log line of the test process for good (secrets.REGISTRY): a
# user name that is a common word ("alice") would be masked in other tests' logs too.
USERNAME = f"user-{secrets.token_hex(6)}"


class ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class RequestLog:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()

    def write(self, entry: dict[str, object]) -> None:
        with self._lock, self._path.open("a") as out:
            out.write(json.dumps(entry) + "\n")


def fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def logged(app: WsgiApp, server: str, prefix: str, log: RequestLog) -> WsgiApp:
    """`app` for paths under `prefix` only (404 for the rest), each request logged."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        environ["wsgi.input"] = io.BytesIO(body)
        form = parse_qs(body.decode("latin-1")) if body else {}
        scheme, _, credential = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        entry: dict[str, object] = {
            "server": server,
            "path": environ["PATH_INFO"],
            "grant_type": form.get("grant_type", [None])[0],
            "scope": form.get("scope", [None])[0],
            "fields": sorted(form),
            "auth": scheme.lower() or None,
            # Which token was sent, without the token: a fingerprint the tests compute too.
            "token": fingerprint(credential) if scheme.lower() == "bearer" else None,
            "probe": "HTTP_X_PROBE" in environ,
        }

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            entry["status"] = int(status.split()[0])
            log.write(entry)
            return start_response(status, headers, exc_info)

        if not environ["PATH_INFO"].startswith(prefix):
            start("404 Not Found", [("Content-Length", "0")])
            return []
        return app(environ, start)

    return wsgi


def create_accounts() -> dict[str, object]:
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import Application

    password = secrets.token_urlsafe(12)
    get_user_model().objects.create_user(USERNAME, password=password)
    clients: dict[str, dict[str, str | None]] = {}
    for name, (grant, confidential) in CLIENTS.items():
        # Characters that RFC 6749 §2.3.1's form-encoding of the Basic header must carry.
        secret = secrets.token_urlsafe(18) + ":+%/ x" if confidential else None
        client_id = f"{name}-{secrets.token_hex(6)}"
        Application.objects.create(
            name=name,
            client_id=client_id,
            client_secret=secret or "",
            client_type="confidential" if confidential else "public",
            authorization_grant_type=grant,
            redirect_uris="",
        )
        clients[name] = {"client_id": client_id, "client_secret": secret}
    return {"clients": clients, "username": USERNAME, "password": password}


def main(argv: list[str]) -> int:
    state = Path(argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "oauth_provider.settings"
    os.environ["OAUTH_PROVIDER_DB"] = str(state / "db.sqlite3")
    import django
    from django.core.management import call_command
    from django.core.wsgi import get_wsgi_application

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    accounts = create_accounts()
    app = get_wsgi_application()
    log = RequestLog(state / "requests.jsonl")
    servers = {
        name: make_server(
            "127.0.0.1", 0, logged(app, name, prefix, log), ThreadingServer, QuietHandler
        )
        for name, prefix in (("token", "/o/"), ("api", "/api/"))
    }
    for server in servers.values():
        threading.Thread(target=server.serve_forever, daemon=True).start()
    ports = {name: server.server_address[1] for name, server in servers.items()}
    print(json.dumps({"ports": ports, **accounts}), flush=True)
    sys.stdin.read()  # until the harness closes it (or ends this process)
    for server in servers.values():
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
