"""The tuning blocks: `limits:` (what a client may make the proxy wait for or hold) and `upstream:`.

Both blocks are optional, and an absent key keeps its default: for `limits`, the one `Settings`
declares, so those defaults live in one place.
"""

from __future__ import annotations

from typing import Any

from authproxy.config.node import Node
from authproxy.settings import ListenAddress, Settings

UPSTREAM_KEYS = ("busy_poll_us",)
LIMIT_KEYS = (
    "header_timeout",
    "keepalive_timeout",
    "max_header_size",
    "body_timeout",
    "max_connections",
    "replay_buffer_total",
    "websocket_message",
)


def parse_limits(node: Node) -> dict[str, Any]:
    """The `limits` block as `Settings` keyword arguments, defaults filled in."""
    if not node.missing:
        node.keys(LIMIT_KEYS)
    default = Settings(ListenAddress(), ())
    return {
        "header_timeout": node.child("header_timeout").number(default.header_timeout),
        "keepalive_timeout": node.child("keepalive_timeout").number(default.keepalive_timeout),
        "max_header_size": node.child("max_header_size").integer(
            default.max_header_size, minimum=1
        ),
        "body_timeout": node.child("body_timeout").number(default.body_timeout),
        "max_connections": node.child("max_connections").integer(
            default.max_connections, minimum=1
        ),
        # 0 turns replay buffering off: every body streams, and a 401 reaches the client.
        "replay_buffer_total": node.child("replay_buffer_total").integer(
            default.replay_buffer_total, minimum=0
        ),
        "websocket_message": node.child("websocket_message").integer(
            default.websocket_message, minimum=1
        ),
    }


def parse_upstream_block(node: Node) -> int:
    """`upstream.busy_poll_us`: microseconds the event loop keeps polling after an upstream
    exchange instead of sleeping (0: off)."""
    if not node.missing:
        node.keys(UPSTREAM_KEYS)
    return node.child("busy_poll_us").integer(0, minimum=0, maximum=10_000)
