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
    title = HTTPStatus(status).phrase
    body: dict[str, object] = {
        "type": TYPE_BASE + (kind or title.lower().replace(" ", "-")),
        "title": title,
        "status": status,
        "detail": detail,
    }
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
