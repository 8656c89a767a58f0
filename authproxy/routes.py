"""Route matching and upstream URL building: pure functions over raw request targets.

Paths are handled as the raw bytes-as-text the client sent (`request.raw_path`), never decoded and
re-encoded, so `%2F` and every other escape reaches the upstream exactly as written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote

from yarl import URL

from authproxy.config import Route


class UnsafePath(ValueError):
    """The target contains a `..` segment (plain or percent-encoded): it could escape the base."""


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    upstream_url: URL


class RouteTable:
    """Longest-prefix matching on path-segment boundaries, compiled once at start."""

    def __init__(self, routes: Iterable[Route]) -> None:
        # Longest prefix first, so `/api/v2` wins over `/api` without comparing lengths per request.
        self._routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self._bases = {
            route.name: (str(route.upstream.origin()), route.upstream.raw_path.rstrip("/"))
            for route in self._routes
        }

    @property
    def routes(self) -> tuple[Route, ...]:
        return tuple(self._routes)

    def find(self, raw_target: str) -> tuple[Route, str] | None:
        """Return the route for `raw_target` and the rest of the target after its prefix."""
        for route in self._routes:
            prefix = route.prefix
            if prefix == "/":
                return route, raw_target
            if raw_target.startswith(prefix):
                rest = raw_target[len(prefix) :]
                if not rest or rest[0] in "/?":
                    return route, rest
        return None

    def match(self, raw_target: str) -> RouteMatch | None:
        """Match and build the upstream URL; raises UnsafePath for dot-dot segments."""
        found = self.find(raw_target)
        if found is None:
            return None
        route, rest = found
        origin, base_path = self._bases[route.name]
        return RouteMatch(route, URL(origin + join_path(base_path, rest), encoded=True))


def join_path(base_path: str, rest: str) -> str:
    """`/base` + `/x?q` → `/base/x?q`; an empty result becomes `/`. Rejects `..` segments."""
    path, sep, query = rest.partition("?")
    if ".." in path or "%2" in path.lower():
        reject_dot_segments(path)
    joined = base_path + path
    if not joined.startswith("/"):
        joined = "/" + joined
    return joined + sep + query


def reject_dot_segments(path: str) -> None:
    # Decode fully (double-encoded `%252e` included) before splitting, and split on both slashes:
    # some upstreams decode `%2F` or treat `\` as a separator, and each would turn `..%2F` into a
    # real parent step outside the route's base path.
    decoded = path
    for _ in range(3):
        decoded = unquote(decoded)
    for segment in decoded.replace("\\", "/").split("/"):
        if segment == "..":
            raise UnsafePath("path contains a '..' segment")
