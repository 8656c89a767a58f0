"""Route matching and upstream URL building: pure functions over raw request targets.

Paths are handled as the raw bytes-as-text the client sent (`request.raw_path`), never decoded and
re-encoded, so `%2F` and every other escape reaches the upstream exactly as written.

The route (and with it a client's permission) is chosen on one normalised form of the path, so
`/svc/%69nternal`, `/svc//internal`, `/svc/./internal` and `/svc/INTERNAL` cannot slip past a rule
on `/svc/internal` into the upstream of `/svc`, which would resolve them to the same resource.
A target whose raw form, or whose normalised form read case-insensitively, would choose another
route than the normalised form is refused as ambiguous instead of guessed at.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from yarl import URL

# Re-exported: callers catch them as `routes.UnsafePath` and `routes.AmbiguousPath`.
from authproxy.errors import AmbiguousPath as AmbiguousPath
from authproxy.errors import UnsafePath as UnsafePath
from authproxy.settings import Route


@dataclass(frozen=True, slots=True)
class RouteMatch:
    route: Route
    upstream_url: URL


# Only these can make the normalised path differ from the raw one (an escape, an empty or dot
# segment, a backslash, path parameters); other targets take the fast path.
_NEEDS_CARE = re.compile(r"%|//|/\.|\\|;")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
# RFC 3986 §2.3: escapes of these are equivalent to the characters themselves (§6.2.2.2).
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
# Overlong UTF-8 forms of '.', '/', '\' and NUL (RFC 3629 §3 forbids them; lenient decoders
# still map them to the ASCII character, as in the IIS "%c0%af" traversal).
_OVERLONG = re.compile(
    rb"\xc0[\x80\xae\xaf]|\xc1\x9c"
    rb"|\xe0\x80[\x80\xae\xaf]|\xe0\x81\x9c"
    rb"|\xf0\x80\x80[\x80\xae\xaf]|\xf0\x80\x81\x9c"
)
_SEPARATORS = re.compile(rb"[/\\]")
# Java servlet containers drop `;params` from a segment (`..;x` is `..`); C code stops at NUL.
_SEGMENT_END = re.compile(rb"[;\x00]")
# Upstreams decode up to this many layers of escapes (`%252e` is `.` after two).
_DECODE_ROUNDS = 3


class RouteTable:
    """Longest-prefix matching on path-segment boundaries, compiled once at start."""

    def __init__(self, routes: Iterable[Route]) -> None:
        # Longest prefix first, so `/api/v2` wins over `/api` without comparing lengths per request.
        self._routes = sorted(routes, key=lambda route: len(route.prefix), reverse=True)
        self._folded = [(route.prefix.lower(), route) for route in self._routes]
        # Characters of a path that can decide the route: the longest prefix and one boundary.
        self._reach = max((len(route.prefix) for route in self._routes), default=0) + 1
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
        """Match and build the upstream URL from the raw target.

        Raises UnsafePath for dot-dot segments and AmbiguousPath when the raw and normalised
        forms disagree on the route.
        """
        path, sep, query = raw_target.partition("?")
        found = self.find(path)
        chosen = None if found is None else found[0]
        if _NEEDS_CARE.search(path) is not None:
            reject_dot_segments(path)
            canonical = normalise_path(path)
            found_canonical = self.find(canonical)
            if (None if found_canonical is None else found_canonical[0]) is not chosen:
                raise AmbiguousPath("the path chooses another route once normalised")
            self._check_case(canonical, chosen)
        else:
            self._check_case(path, chosen)
        if found is None:
            return None
        route, rest = found
        origin, base_path = self._bases[route.name]
        upstream_path = (base_path + rest) or "/"
        return RouteMatch(route, URL(origin + upstream_path + sep + query, encoded=True))

    def _check_case(self, path: str, chosen: Route | None) -> None:
        # Many upstreams (IIS, macOS and Windows file systems) ignore case: `/svc/INTERNAL` must
        # not reach `/svc`'s upstream when a route `/svc/internal` exists.
        head = path[: self._reach]
        lowered = head.lower()
        if lowered == head:
            return
        for prefix, route in self._folded:
            if prefix == "/" or (
                lowered.startswith(prefix) and lowered[len(prefix) : len(prefix) + 1] in ("", "/")
            ):
                if chosen is None or len(route.prefix) > len(chosen.prefix):
                    raise AmbiguousPath("the path chooses another route when case is ignored")
                return


def normalise_path(path: str) -> str:
    """The path as routing sees it: unreserved escapes decoded, `;params`, empty and `.` segments
    dropped, and `\\`, `%2F`, `%5C` read as `/` (as some upstreams do). Used for matching only."""
    if "%" in path:
        path = _ESCAPE.sub(_unescape, path)
    segments = path.replace("\\", "/").split("/")
    if ";" in path:
        segments = [segment.partition(";")[0] for segment in segments]
    return "/" + "/".join([segment for segment in segments if segment and segment != "."])


def _unescape(escape: re.Match[str]) -> str:
    char = chr(int(escape.group(1), 16))
    if char in _UNRESERVED:
        return char
    return "/" if char in "/\\" else escape.group(0)


def reject_dot_segments(path: str) -> None:
    """Raise UnsafePath for a segment that some upstream would read as `..`.

    Escapes are decoded up to three layers deep (`%252e`), both slashes separate segments (some
    upstreams decode `%2F` or treat `\\` as one), a segment ends at `;` or NUL (`..;x`, `..%00`),
    and overlong UTF-8 forms of `.`, `/`, `\\` are refused wherever they appear.
    """
    data = path.encode("utf-8", "surrogateescape")
    for _ in range(_DECODE_ROUNDS):
        if b"%" not in data:
            break
        data = unquote_to_bytes(data)
        if _OVERLONG.search(data) is not None:
            raise UnsafePath("the path contains an overlong UTF-8 encoding of '.', '/' or '\\'")
    if b".." not in data:
        return
    for segment in _SEPARATORS.split(data):
        if _SEGMENT_END.split(segment, maxsplit=1)[0] == b"..":
            raise UnsafePath("the path contains a '..' segment")
