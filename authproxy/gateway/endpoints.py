"""The proxy's own `/-/` paths: probes anyone may call, status and metrics for admin clients only.

`/-/health` and `/-/ready` stay open: orchestrators and load balancers call them without a key.
`/-/status` and `/-/metrics` describe every route and client, so with `clients` configured they
need the key of a client with `admin: true`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from authproxy.auth.stats import TokenStatus
from authproxy.gateway.clients import ClientGate
from authproxy.gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from authproxy.gateway.metrics import Counts, render
from authproxy.gateway.status import readiness_failures, status_document
from authproxy.gateway.status_page import render_status_html
from authproxy.problems import problem_response
from authproxy.settings import Settings

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]


class TokenSource(Protocol):
    """A route's token as the gateway sees it: a snapshot, taken when it is shown."""

    def status(self, now: float) -> TokenStatus: ...


@dataclass(frozen=True, slots=True)
class FleetView:
    """What the pages show beyond the answering process: `counts` of every worker, summed;
    each route's token as shared (`from_store`: the routes whose token was read from the
    shared store rather than this process's copy), and how many `workers` serve the port."""

    counts: Counts
    tokens: Mapping[str, TokenStatus]
    from_store: frozenset[str]
    workers: int


class Fleet(Protocol):
    async def view(self) -> FleetView: ...


class Visit(Protocol):
    """Where the access log reads which client called."""

    client: str | None


def is_own(target: str) -> bool:
    """The proxy's own namespace: `/-` and everything under `/-/`, never forwarded."""
    return target == "/-" or target.startswith("/-/")


def unauthorized() -> web.Response:
    """The answer to a missing or unknown client key."""
    return problem_response(
        401,
        "a client key is required: send it as X-Authproxy-Key or Authorization: Bearer",
        kind="client-unauthorized",
        headers={"WWW-Authenticate": 'Bearer realm="authproxy"'},
    )


class Endpoints:
    """The `/-/` paths over one config's routes, their tokens and the clients."""

    def __init__(
        self,
        settings: Settings,
        tokens: Mapping[str, TokenSource],
        gate: ClientGate,
        fleet: Fleet,
        now: Callable[[], float],
    ) -> None:
        self._settings = settings
        self._tokens = tokens
        self._gate = gate
        self._fleet = fleet
        self._now = now
        self._open: dict[str, Handler] = {"/-/health": self._health, "/-/ready": self._ready}
        self._guarded: dict[str, Handler] = {
            "/-/status": self._status,
            "/-/metrics": self._metrics_page,
        }

    async def answer(self, request: web.BaseRequest, path: str, visit: Visit) -> web.StreamResponse:
        """Answer `path` (no query); an admin client who calls is named in `visit`."""
        if (handler := self._open.get(path)) is not None:
            return await handler(request)
        if (handler := self._guarded.get(path)) is None:
            return problem_response(404, "no such proxy endpoint")
        if self._gate.enabled:
            caller = self._gate.identify(request.headers)
            if caller is None:
                return unauthorized()
            visit.client = caller.client.name
            if not caller.client.admin:
                # Status and metrics describe every route and client, whatever the caller's
                # own `routes` allow.
                return problem_response(
                    403, "only a client with 'admin: true' may read this", kind="admin-only"
                )
        return await handler(request)

    def _statuses(self) -> dict[str, TokenStatus]:
        now = self._now()
        return {name: source.status(now) for name, source in self._tokens.items()}

    async def _metrics_page(self, _request: web.BaseRequest) -> web.StreamResponse:
        view = await self._fleet.view()
        body = render(view.counts, view.tokens, self._now(), workers=view.workers)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _health(self, _request: web.BaseRequest) -> web.StreamResponse:
        return web.json_response({"status": "ok"})

    async def _ready(self, _request: web.BaseRequest) -> web.StreamResponse:
        failing = readiness_failures(self._statuses())
        if failing:
            return web.json_response({"status": "not ready", "routes": failing}, status=503)
        return web.json_response({"status": "ready"})

    async def _status(self, request: web.BaseRequest) -> web.StreamResponse:
        view = await self._fleet.view()
        document = status_document(self._settings, view.tokens, self._now(), view.from_store)
        document["workers"] = view.workers
        # For watching a long-running process: tasks that pile up are a leak (see bench/soak.py).
        document["process"] = {"pid": os.getpid(), "tasks": len(asyncio.all_tasks())}
        if "text/html" in request.headers.get("Accept", ""):
            return web.Response(text=render_status_html(document), content_type="text/html")
        return web.json_response(document)
