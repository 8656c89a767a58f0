"""Header rules of a reverse proxy (RFC 9110 §7.6.1): hop-by-hop removal, X-Forwarded-*, Location.

Pure functions over multidicts, so every rule is tested without a socket.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from multidict import CIMultiDict, CIMultiDictProxy

from authproxy.settings import HeaderEdits

# Connection-specific headers never cross a proxy, in either direction (RFC 9110 §7.6.1; RFC 9112
# §9.6 for TE/Trailer/Transfer-Encoding). Host is rebuilt for the upstream; Expect is answered by
# the proxy itself (it sends the 100 Continue). The client's Content-Length is dropped too: the
# upstream client frames the bytes it actually sends, never what the client claimed (a length
# kept over a changed body smuggles the surplus as a request of its own, RFC 9112 §11.2).
# Lower-case plain strings, compared with `name.lower()`: a set of `istr` hashes by the original
# spelling, so `"connection" in {istr("Connection")}` is False and lower-case names slipped through.
HOP_BY_HOP = frozenset(
    name.lower()
    for name in (
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Proxy-Authorization",
        "Proxy-Authenticate",
    )
)
REQUEST_ONLY_DROPPED = frozenset({"host", "expect", "content-length"})

_REQUEST_DROPPED = HOP_BY_HOP | REQUEST_ONLY_DROPPED


def connection_named(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names listed in Connection (they are hop-by-hop too), lower-cased."""
    names: set[str] = set()
    for value in headers.getall("Connection", ()):
        names.update(token.strip().lower() for token in value.split(",") if token.strip())
    return frozenset(names)


def upstream_request_headers(
    incoming: CIMultiDictProxy[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The client's headers minus hop-by-hop ones and `drop` (lower-case names the proxy sets)."""
    # A C-level copy, then deleting the few names present, is twice as fast as filtering every
    # header through Python; order and repeated headers are kept either way.
    headers = incoming.copy()
    if "Connection" in headers:
        _remove(headers, connection_named(headers))
    _remove(headers, _REQUEST_DROPPED)
    _remove(headers, drop)
    return headers


def _remove(headers: CIMultiDict[str], names: Iterable[str]) -> None:
    for name in names:
        if name in headers:
            del headers[name]  # every occurrence, in any spelling


def downstream_response_headers(
    upstream: CIMultiDictProxy[str], drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """The upstream's headers minus hop-by-hop ones and `drop`; repeated ones stay separate."""
    extra = connection_named(upstream) if "Connection" in upstream else frozenset()
    removed = HOP_BY_HOP.union(extra, (name.lower() for name in drop))
    return CIMultiDict(
        (name, value) for name, value in upstream.items() if name.lower() not in removed
    )


def response_removal(drop: Iterable[str]) -> frozenset[str]:
    """Lower-case names never copied downstream on a route: hop-by-hop ones, `drop`, and
    Content-Length, which the proxy sets once from the answer's framing (RFC 9112 §6.3: never
    next to Transfer-Encoding, never twice)."""
    return HOP_BY_HOP.union(("content-length",), (name.lower() for name in drop))


def passed_downstream(
    fields: Sequence[tuple[str, str]],
    lowered: Sequence[str],
    connection: Iterable[str],
    removed: frozenset[str],
) -> CIMultiDict[str]:
    """`downstream_response_headers` for a parsed head: `lowered[i]` is `fields[i]`'s name in
    lower case, `connection` the Connection header's tokens, `removed` a `response_removal`."""
    if not removed.issuperset(connection):
        removed = removed.union(connection)
    return CIMultiDict(
        [field for field, name in zip(fields, lowered, strict=True) if name not in removed]
    )


def apply_edits(headers: CIMultiDict[str], edits: HeaderEdits) -> None:
    """A route's header rule on one direction: `remove` every occurrence, then `assign`."""
    for name in edits.remove:
        if name in headers:
            del headers[name]
    for name, value in edits.assign:
        headers[name] = value


def add_forwarded(headers: CIMultiDict[str], client_ip: str | None, proto: str, host: str) -> None:
    """Append this hop to X-Forwarded-For, -Proto and -Host, as each proxy in a chain does.

    Earlier values are kept (joined into one header) so the upstream sees the whole chain; a
    client can write anything into them, so they are information, never authentication.
    """
    for name, value in (
        ("X-Forwarded-For", client_ip),
        ("X-Forwarded-Proto", proto),
        ("X-Forwarded-Host", host),
    ):
        if not value:
            continue
        previous = headers.popall(name, None)
        headers[name] = value if previous is None else ", ".join([*previous, value])


# What a browser removes from a URL before reading it (WHATWG URL: ASCII tab and newline
# anywhere, C0 controls and space at the ends), so `/\t/evil.example` is `//evil.example` to it.
_URL_IGNORED = str.maketrans("", "", "\t\n\r")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def leaves_the_origin(path: str) -> bool:
    """True for a reference a browser reads as scheme-relative: `//host` or `/\\host` (WHATWG URL
    treats `\\` as `/` in http(s) URLs), so it would send the user to another host."""
    cleaned = path.translate(_URL_IGNORED).lstrip(_C0_AND_SPACE)
    return cleaned[:1] in ("/", "\\") and cleaned[1:2] in ("/", "\\")


class LocationRewriter:
    """Keeps redirects on the proxy: rewrites upstream-absolute and path-absolute locations.

    `http://upstream/base/next` and `/base/next` both become `<proxy>/<prefix>/next`; a location
    on any other host is left alone (it is not ours to hide). A rewritten path that a browser
    would read as another host (`/base//evil.example` on `prefix: /` is `//evil.example`) is made
    absolute on the proxy's origin: it keeps the upstream's meaning, a path on this host.
    """

    __slots__ = ("_base_path", "_origins", "_prefix")

    def __init__(self, upstream_origin: str, upstream_base_path: str, prefix: str) -> None:
        self._origins = (upstream_origin, upstream_origin.lower())
        self._base_path = upstream_base_path.rstrip("/")
        self._prefix = "" if prefix == "/" else prefix

    def rewrite(self, location: str, proxy_origin: str) -> str:
        for origin in self._origins:
            if location.startswith(origin) and location[len(origin) : len(origin) + 1] in "/?#":
                return proxy_origin + self._on_prefix(location[len(origin) :] or "/")
        if location.startswith("/") and not location.startswith("//"):
            path = self._on_prefix(location)
            return proxy_origin + path if leaves_the_origin(path) else path
        return location

    def _on_prefix(self, path: str) -> str:
        base = self._base_path
        if base and (path == base or (path.startswith(base) and path[len(base)] in "/?#")):
            # `/base` maps back to `/prefix`, not `/prefix/`: the slash is a different resource
            # upstream, and adding one loops with upstreams that redirect `/x/` to `/x`. On
            # `prefix: /`, `/base?x` is `/?x`, not a reference relative to the current page.
            rest = self._prefix + path[len(base) :]
            return rest if rest.startswith("/") else "/" + rest
        return self._prefix + path
