"""Error answers as `application/problem+json` (RFC 9457): the only error body the proxy sends.

Bodies name the route and what went wrong in general terms; they never carry an upstream's error
body, a stack trace or a secret.
"""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from authproxy.errors import LoginFailed, UpstreamError

PROBLEM_CONTENT_TYPE = "application/problem+json"
# A URN, not a URL: nothing needs to be served at it, and it never points users elsewhere.
TYPE_BASE = "urn:authproxy:problem:"


def problem_response(
    status: int,
    detail: str,
    *,
    kind: str | None = None,
    route: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    body = _document(status, detail, kind)
    if route is not None:
        body["route"] = route
    if extra:
        body.update(extra)
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def canned_problem(
    status: int, detail: str, *, kind: str, headers: dict[str, str] | None = None
) -> bytes:
    """A whole HTTP/1.1 problem answer that closes the connection, as bytes: for answering
    before aiohttp has parsed anything (a connection over the cap)."""
    body = json.dumps(_document(status, detail, kind)).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {PROBLEM_CONTENT_TYPE}",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return "\r\n".join([*lines, "", ""]).encode() + body


def _document(status: int, detail: str, kind: str | None) -> dict[str, object]:
    title = HTTPStatus(status).phrase
    return {
        "type": TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }


def problem_for(error: UpstreamError) -> web.Response:
    extra: dict[str, object] | None = None
    if isinstance(error, LoginFailed) and error.upstream_status is not None:
        extra = {"upstream_status": error.upstream_status}
    response = problem_response(
        error.status, error.detail, kind=error.kind, route=error.route, extra=extra
    )
    if error.closes_connection:
        response.force_close()
    return response
