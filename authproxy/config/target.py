"""Where a custom flow's login or refresh call goes: `path` on the upstream, or `url` elsewhere.

An identity provider's token endpoint lives on its own origin, so `url` takes an absolute http(s)
URL (checked by `auth/endpoints.py`); what `${...}` put in it beyond the origin is masked, as in
an upstream URL.
"""

from __future__ import annotations

from authproxy.auth.endpoints import absolute_url, is_absolute
from authproxy.config.interpolate import register_beyond_origin
from authproxy.config.node import Node


def parse_target(node: Node) -> str | None:
    """`path` on the upstream's origin, or `url`: an absolute URL on any origin."""
    path_node, url_node = node.child("path"), node.child("url")
    if url_node.missing:
        path = path_node.string(required=True)
        if path is not None and not path.startswith("/"):
            elsewhere = "; for another origin, give url instead" if is_absolute(path) else ""
            path_node.problem(f"must start with '/'; it is joined to the upstream URL{elsewhere}")
        return path
    if not path_node.missing:
        url_node.problem("give either path (on the upstream) or url (an absolute URL), not both")
    read = url_node.text(secret=False)
    if read is None:
        return None
    register_beyond_origin(read, read.value)  # what ${...} put in the path or query: as upstream
    try:
        return absolute_url(read.value)
    except ValueError as exc:
        url_node.problem(str(exc))
        return None
