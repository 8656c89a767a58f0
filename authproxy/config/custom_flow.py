"""A route's own auth flow: credentials, login, token, expiry, refresh, inject and adopt.

Every template is checked (`flow_templates.py`) against what will exist when it is rendered (login:
credentials; refresh: credentials and captures; inject: credentials and the captures a login
always returns), so a typo is a problem at start rather than a failed request.
The options both kinds of flow take (`ttl`, `renew_at`, ...) are read by `config/auth_block.py`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from types import MappingProxyType
from typing import Literal, cast, get_args

from authproxy.auth_spec import (
    AdoptSpec,
    AuthSpec,
    BodyEncoding,
    Capture,
    ExpirySource,
    ExpirySpec,
    InjectSpec,
    RefreshSpec,
    RequestSpec,
)
from authproxy.config.flow_templates import parse_header_list, parse_header_name, parse_templates
from authproxy.config.node import Node, unknown
from authproxy.config.target import parse_target
from authproxy.http_syntax import is_token
from authproxy.secrets import Secret

CUSTOM_KEYS = (
    *("credentials", "login", "token", "expiry", "refresh", "inject", "adopt"),
    "strip_response_headers",
)
REQUEST_KEYS = ("method", "path", "url", "format", "body", "headers")
REFRESH_KEYS = (*REQUEST_KEYS, "requires")
TOKEN_KEYS, EXPIRY_KEYS = ("from", "key", "refresh_key", "extra"), ("from", "key", "seconds")
INJECT_KEYS, ADOPT_KEYS = ("headers", "defaults"), ("trigger", "headers")
EXPIRY_SOURCES: tuple[str, ...] = get_args(ExpirySource)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # what a template placeholder can name


def parse_custom_flow(node: Node) -> AuthSpec | None:
    """The flow a route spells out under `CUSTOM_KEYS`; the caller checks which keys are allowed."""
    credentials, declared = _credentials(node.child("credentials"))
    login_node = node.child("login")
    static = login_node.missing
    if static:  # static credentials: nothing is logged in to, so nothing is captured or refreshed
        for key in ("token", "refresh"):
            if not node.child(key).missing:
                node.child(key).problem("only used with login")
    login = None if static else _request(login_node, declared)
    captures = () if static else _captures(node.child("token"))
    for name in declared & {capture.name for capture in captures}:
        node.child("credentials").child(name).problem("is also the name of a captured value")
    names = declared | {capture.name for capture in captures}
    expiry = _expiry(node.child("expiry"))
    refresh_node, adopt_node = node.child("refresh"), node.child("adopt")
    refresh = None if static or refresh_node.missing else _refresh(refresh_node, names, captures)
    inject = _inject(node.child("inject"), declared, captures)
    adopt = None if adopt_node.missing else _adopt(adopt_node, names)
    strip = parse_header_list(node.child("strip_response_headers"))
    if inject is None:
        return None
    return AuthSpec(None, credentials, login, captures, expiry, inject, refresh, adopt, strip)


def _credentials(node: Node) -> tuple[dict[str, Secret], set[str]]:
    """The credentials with a value, and all names declared: a template reading a credential
    whose variable is unset names one that exists (reported once, as unset), not an unknown."""
    credentials: dict[str, Secret] = {}
    declared: set[str] = set()
    for name, child in node.pairs():
        if not _NAME.fullmatch(name):
            child.problem("a credential name is letters, digits and '_', not starting with a digit")
            continue
        declared.add(name)
        if secret := child.credential():
            credentials[name] = secret
    return credentials, declared


def _request(
    node: Node, names: set[str], keys: tuple[str, ...] = REQUEST_KEYS
) -> RequestSpec | None:
    if not node.keys(keys):
        return None
    method = node.child("method").string("POST", secret=False).upper()
    if not is_token(method):
        node.child("method").problem("not an HTTP method")
    path = parse_target(node)
    encoding = node.child("format").choice(("json", "form"), "json", "format")
    body = parse_templates(node.child("body"), names)
    headers = parse_templates(node.child("headers"), names, header_names=True)
    if path is None:
        return None
    return RequestSpec(method, path, cast(BodyEncoding, encoding), body, headers)


def _captures(node: Node) -> tuple[Capture, ...]:
    if node.missing:
        node.problem("required with login: where the answer holds the token, e.g. {key: token}")
        return ()
    if not node.keys(TOKEN_KEYS):
        return ()
    choice = node.child("from").choice(("body", "header"), "body", "source")
    source = cast(Literal["body", "header"], choice)
    captures = [Capture("token", source, _keys(node.child("key"), required=True))]
    if not (refresh_node := node.child("refresh_key")).missing:
        captures.append(Capture("refresh_token", source, _keys(refresh_node), required=False))
    extra = node.child("extra")
    for name, child in extra.pairs():
        if not _NAME.fullmatch(name) or name in ("token", "refresh_token"):
            child.problem("not a usable name: letters, digits, '_'; not token or refresh_token")
        else:
            captures.append(Capture(name, source, _keys(child)))
    return tuple(captures)


def _keys(node: Node, *, required: bool = False) -> tuple[str, ...]:
    """One key, or a list of alternatives tried in order."""
    if node.missing:
        if required:
            node.problem("required")
        return ()
    # Field names in an answer, not secrets: masking `token` would mask the word everywhere.
    if not isinstance(node.value, list):
        text = node.text(secret=False)
        return () if text is None else (text.value,)
    if not node.value:
        node.problem("empty; name at least one key")
    return tuple(text.value for item in node.items() or () if (text := item.text(secret=False)))


def _expiry(node: Node) -> ExpirySpec:
    if node.missing or not node.keys(EXPIRY_KEYS):
        return ExpirySpec("none")
    source = node.child("from").choice(EXPIRY_SOURCES, None, "source")
    if source is None:
        return ExpirySpec("none")
    key_node, seconds_node = node.child("key"), node.child("seconds")
    key = seconds = None
    if source in ("field", "header"):
        key = key_node.string(required=True, secret=False)  # a field or header name
    elif not key_node.missing:
        key_node.problem("only used with from: field or from: header")
    if source == "ttl":
        if seconds_node.missing:
            seconds_node.problem("required with from: ttl")
        seconds = seconds_node.number(3600.0)
    elif not seconds_node.missing:
        seconds_node.problem("only used with from: ttl")
    return ExpirySpec(cast(ExpirySource, source), key, seconds)


def _refresh(node: Node, names: set[str], captures: tuple[Capture, ...]) -> RefreshSpec | None:
    request = _request(node, names, REFRESH_KEYS)
    requires_node = node.child("requires")
    requires = requires_node.string("refresh_token", secret=False)
    if requires not in {capture.name for capture in captures}:
        fix = "set token.refresh_key" if requires == "refresh_token" else "add it to token.extra"
        (node if requires_node.missing else requires_node).problem(
            f"needs the captured value '{requires}', which is never captured; {fix}"
        )
    return None if request is None else RefreshSpec(request, requires)


def _inject(
    node: Node, credentials: Collection[str], captures: tuple[Capture, ...]
) -> InjectSpec | None:
    if node.missing:
        node.problem("required: the headers each request gets, e.g. {headers: {X-Key: '{key}'}}")
        return None
    if not node.keys(INJECT_KEYS):
        return None
    # The same split as CompiledInjector: an optional capture may be absent when a header is built.
    names = set(credentials) | {capture.name for capture in captures if capture.required}
    optional = {capture.name for capture in captures if not capture.required}
    headers_node = node.child("headers")
    if headers_node.missing or headers_node.value == {}:
        headers_node.problem("at least one header is required")
    headers = parse_templates(headers_node, names, header_names=True, optional=optional)
    defaults = parse_templates(node.child("defaults"), names, header_names=True, optional=optional)
    return InjectSpec(headers, defaults)


def _adopt(node: Node, names: set[str]) -> AdoptSpec | None:
    if not node.keys(ADOPT_KEYS):
        return None
    trigger = parse_header_name(node.child("trigger"))
    headers_node = node.child("headers")
    if headers_node.missing or headers_node.value == {}:
        headers_node.problem("required: which response header updates which value")
    adopted: dict[str, str] = {}
    for name, child in headers_node.pairs():
        if name not in names:
            child.problem(unknown("name", name, names))
        elif header := parse_header_name(child):
            adopted[name] = header
    return None if trigger is None else AdoptSpec(trigger, MappingProxyType(adopted))
