"""A route's `headers:` block -> `HeaderRules`: headers set on and removed from each direction.

    headers:
      request:  {set: {X-Team: platform, X-Api-Key: ${KEY}}, remove: [Cookie]}
      response: {set: {Cache-Control: no-store}, remove: [Server]}

Values may use `${...}` references, which are secrets like any other (masked wherever they could
show). Names the proxy must own are refused: the framing and connection headers (a rule that
changed them could split one request into two upstream, RFC 9112 §11.2), `Host`, and on the
answer the proxy's own `X-Request-Id` and `Access-Control-*` (CORS is the route's `cors`, which
refuses `*`: a rule must not open what that refuses).
"""

from __future__ import annotations

from authproxy.config.node import Node
from authproxy.http_syntax import is_token
from authproxy.settings import HeaderEdits, HeaderRules

HEADERS_KEYS = ("request", "response")
EDIT_KEYS = ("set", "remove")

_CONNECTION = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authorization",
        "proxy-authenticate",
        "content-length",
    }
)
_REFUSED = {
    "request": _CONNECTION | {"host", "expect"},
    "response": _CONNECTION | {"x-request-id"},
}
_REFUSED_PREFIX = {"request": (), "response": ("access-control-",)}


def parse_header_rules(node: Node) -> HeaderRules | None:
    """`headers` of a route; None when absent or (reported) wrong."""
    if node.missing or not node.keys(HEADERS_KEYS):
        return None
    rules = HeaderRules(
        request=_edits(node.child("request"), "request"),
        response=_edits(node.child("response"), "response"),
    )
    return None if rules == HeaderRules() else rules


def _edits(node: Node, side: str) -> HeaderEdits:
    if node.missing or not node.keys(EDIT_KEYS):
        return HeaderEdits()
    assign: list[tuple[str, str]] = []
    for name, child in node.child("set").pairs():
        if not _allowed(child, name, side):
            continue
        text = child.text()  # every `${...}` in it is registered as a secret
        if text is None:
            continue
        if any(_is_control(char) for char in text.value):
            shown = "" if text.origin == "literal" else f" ({text.origin})"
            child.problem(f"a header value must not hold control characters (CR, LF, NUL){shown}")
            continue
        assign.append((name, text.value))
    remove: set[str] = set()
    remove_node = node.child("remove")
    for item in [] if remove_node.missing else remove_node.items() or []:
        removed = item.string(required=True, secret=False)  # a header name
        if removed is None or not _allowed(item, removed, side):
            continue
        if side == "response" and removed.lower() == "server":
            # aiohttp writes its own Server header into any answer that has none.
            item.problem("the proxy always sends a Server header; set one to replace it instead")
            continue
        remove.add(removed.lower())
    for name, _value in assign:
        if name.lower() in remove:
            node.child("set").child(name).problem("also listed under remove; keep one of them")
    return HeaderEdits(tuple(assign), frozenset(remove))


def _allowed(node: Node, name: str, side: str) -> bool:
    if not is_token(name):
        node.problem(f"{name!r} is not a header name")
        return False
    lowered = name.lower()
    if lowered in _REFUSED[side] or lowered.startswith(_REFUSED_PREFIX[side]):
        reason = (
            "CORS answers come from the route's cors"
            if "access-control" in lowered
            else ("the proxy sets it itself")
        )
        node.problem(f"{name} cannot be changed by a header rule: {reason}")
        return False
    return True


def _is_control(char: str) -> bool:
    # RFC 9110 §5.5: a field value holds visible characters, spaces and tabs (and obs-text).
    return (char < " " and char != "\t") or char == "\x7f"
