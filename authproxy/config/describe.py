"""`Settings` -> a JSON-able dict of what each route will really do (`authproxy check --expand`).

Presets are expanded to the flow they build, so a user sees the login call, what is captured and
what is injected. Credentials appear only as the mask and their origin (`env:NAME`), and every
string is scrubbed last: what a `${VAR}` brought into a template or an upstream URL is a secret.
"""

from __future__ import annotations

from collections.abc import Mapping

from authproxy.auth_spec import AdoptSpec, AuthSpec, Capture, ExpirySpec, RefreshSpec, RequestSpec
from authproxy.secrets import MASK, Secret, masked
from authproxy.settings import HeaderEdits, OutboundProxy, Route, Settings

JSON = dict[str, object]


def describe_settings(settings: Settings) -> JSON:
    """The effective config, with defaults filled in and every secret masked."""
    store = settings.token_store
    return masked(
        {
            "source": settings.source,
            "listen": str(settings.listen),
            "token_store": {"kind": store.kind, "path": store.path, "explicit": store.explicit},
            "shutdown_grace": settings.shutdown_grace,
            "limits": {
                "header_timeout": settings.header_timeout,
                "keepalive_timeout": settings.keepalive_timeout,
                "max_header_size": settings.max_header_size,
                "body_timeout": settings.body_timeout,
                "max_connections": settings.max_connections,
                "replay_buffer_total": settings.replay_buffer_total,
                "websocket_message": settings.websocket_message,
            },
            "allowed_hosts": list(settings.allowed_hosts),
            "routes": {route.name: describe_route(route) for route in settings.routes},
        }
    )


def describe_route(route: Route) -> JSON:
    return {
        "upstream": str(route.upstream),
        "prefix": route.prefix,
        "timeout": {"connect": route.timeout.connect, "read": route.timeout.read},
        "tls": {"verify": route.tls.verify, "ca_file": route.tls.ca_file},
        "forwarded_headers": route.forwarded_headers,
        "auth": None if route.auth is None else describe_auth(route.auth),
        "cors": None
        if route.cors is None
        else {
            "origins": list(route.cors.origins),
            "methods": list(route.cors.methods),
            "headers": list(route.cors.headers),
            "max_age": route.cors.max_age,
        },
        "headers": None
        if route.headers is None
        else {"request": _edits(route.headers.request), "response": _edits(route.headers.response)},
        "proxy": None if route.proxy is None else _proxy(route.proxy),
    }


def _proxy(proxy: OutboundProxy) -> JSON:
    """Where the route's traffic goes first; its credentials as the mask and their origin."""
    credentials = {"username": proxy.username, "password": proxy.password}
    return {
        "address": str(proxy),
        "from": proxy.source,
        "credentials": {name: _secret(value) for name, value in credentials.items() if value},
    }


def _edits(edits: HeaderEdits) -> JSON:
    # Values a `${...}` brought in are masked with every other string (describe_settings).
    return {"set": dict(edits.assign), "remove": sorted(edits.remove)}


def describe_auth(auth: AuthSpec) -> JSON:
    return {
        "preset": auth.preset,
        "flow": "static" if auth.is_static else "login",
        "credentials": {name: _secret(secret) for name, secret in auth.credentials.items()},
        "login": None if auth.login is None else _request(auth.login),
        "captures": [_capture(capture) for capture in auth.captures],
        "expiry": _expiry(auth.expiry),
        "refresh": None if auth.refresh is None else _refresh(auth.refresh),
        "inject": {
            "headers": _templates(auth.inject.headers),
            "defaults": _templates(auth.inject.defaults),
        },
        "adopt": None if auth.adopt is None else _adopt(auth.adopt),
        "strip_response_headers": list(auth.strip_response_headers),
        "invalid_statuses": sorted(auth.invalid_statuses),
        "renew_at": auth.renew_at,
        "relogin_after_rejection": auth.relogin_after_rejection,
        "warm": auth.warm,
        "token_type": auth.token_type,
    }


def _secret(secret: Secret) -> JSON:
    return {"value": MASK, "origin": secret.origin}


def _request(request: RequestSpec) -> JSON:
    described: JSON = {
        "method": request.method,
        "path": request.path,
        "encoding": request.encoding,
        "body": _templates(request.body),
        "headers": _templates(request.headers),
    }
    if request.basic_auth is not None:  # the templates only: "{client_secret}", not its value
        described["basic_auth"] = list(request.basic_auth)
    return described


def _capture(capture: Capture) -> JSON:
    return {
        "name": capture.name,
        "from": capture.source,
        "keys": list(capture.keys),
        "required": capture.required,
    }


def _expiry(expiry: ExpirySpec) -> JSON:
    described: JSON = {"from": expiry.source}
    if expiry.key is not None:
        described["key"] = expiry.key
    if expiry.seconds is not None:
        described["seconds"] = expiry.seconds
    return described


def _refresh(refresh: RefreshSpec) -> JSON:
    return {**_request(refresh.request), "requires": refresh.requires}


def _adopt(adopt: AdoptSpec) -> JSON:
    return {"trigger": adopt.trigger, "headers": dict(adopt.headers)}


def _templates(templates: Mapping[str, str]) -> dict[str, str]:
    return dict(templates)
