"""What web pages may do through the proxy: the Host check, the Origin check, and opt-in CORS.

Any page a user opens can make the browser send requests to `http://127.0.0.1:8080`, and the
proxy adds the upstream credentials to them. Without `clients` (a developer's localhost proxy)
nothing else stands in the way, so:

* DNS rebinding (mitmproxy#3234): a page on `evil.example` points its own name at 127.0.0.1. Its
  requests are then same-origin to the browser, but carry `Host: evil.example`. Only Host names
  that mean this machine, the listen address, or an entry of `allowed_hosts` are served.
* Cross-site requests (CSRF, and reads through CORS): browsers mark a page's requests with
  `Origin` and Fetch Metadata (`Sec-Fetch-Site`, W3C Fetch Metadata Request Headers). A request
  from another site, or with an Origin other than the proxy's own, is refused unless the route's
  `cors.origins` lists that origin. curl, SDKs and server-side code send neither header and pass.

CORS is opt-in per route: the proxy answers a listed origin's preflight itself, never forwards
one, and sets `Access-Control-Allow-Origin` on the answers; it never sends
`Access-Control-Allow-Credentials`, since the credentials it adds are not the browser's.
With `clients` (a team gateway) client keys are the control: no Host or Origin refusals, but CORS
still answers listed origins, and a Host that is not one of the proxy's names is never reflected.
"""

from __future__ import annotations

from aiohttp import web
from multidict import CIMultiDictProxy

from authproxy.problems import problem_response
from authproxy.settings import CorsSettings, ListenAddress, Settings

# Names that always mean this machine; a page cannot make a browser send them for its own origin.
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
# Listen addresses that are not names: clients reach such a proxy by a name from `allowed_hosts`.
_UNSPECIFIED = frozenset({"0.0.0.0", "[::]"})  # noqa: S104 - compared against, never bound

# An upstream's CORS answer was written for its own auth, not for a proxy that adds credentials:
# it never reaches the browser. The proxy sets these itself, for the origins a route lists.
CORS_RESPONSE_HEADERS = frozenset(
    {
        "access-control-allow-origin",
        "access-control-allow-credentials",
        "access-control-allow-methods",
        "access-control-allow-headers",
        "access-control-allow-private-network",
        "access-control-expose-headers",
        "access-control-max-age",
    }
)
# Fetch §2.2.2 CORS-safelisted request-header names: a listed origin may send them without
# naming them in `cors.headers` (Content-Type included: a JSON body is no extra power).
SAFELISTED_HEADERS = frozenset(
    {"accept", "accept-language", "content-language", "content-type", "range"}
)
_PREFLIGHT_VARY = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"

AnswerHeaders = tuple[tuple[str, str], ...]
NO_HEADERS: AnswerHeaders = ()
VARY_ORIGIN: AnswerHeaders = (("Vary", "Origin"),)


def _name_of(host: str) -> str | None:
    """`name`, `name:port`, `[v6]`, `[v6]:port` → the name part; None when malformed."""
    if host.startswith("["):
        end = host.find("]") + 1
        name, rest = host[:end], host[end:]
        if not end:
            return None
    else:
        name, colon, port = host.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and rest[1:].isascii() and rest[1:].isdigit()):
        return None
    return name


class HostNames:
    """The Host header values that name this proxy.

    A name without a port matches it with any port: DNS rebinding needs the attacker's name, and
    the port only echoes the URL's, so `localhost:3000` reaching this socket (a port forward) is
    harmless. An `allowed_hosts` entry with a port matches exactly that `host:port`.
    """

    __slots__ = ("_any", "_exact", "_names", "default")

    def __init__(self, settings: Settings, bound_port: int) -> None:
        # On a Unix socket any Host is served: no browser connects to one, so no page can
        # rebind a name to it, and its clients send what they like (`localhost`, the path).
        self._any = settings.listen.path is not None
        listen = ListenAddress(settings.listen.host.lower(), bound_port)
        listen_name = str(listen).rpartition(":")[0]
        names = set(LOOPBACK_NAMES)
        if listen_name not in _UNSPECIFIED:
            names.add(listen_name)
        exact: set[str] = set()
        for entry in settings.allowed_hosts:
            (names if _name_of(entry) == entry else exact).add(entry)
        self._names = frozenset(names)
        # The names with the bound port, as clients usually send them: one set lookup for most
        # requests instead of splitting off the port.
        self._exact = frozenset(exact | {f"{name}:{bound_port}" for name in names})
        # What the proxy calls itself when a request's Host may not be reflected (in rewritten
        # Location and X-Forwarded-Host): the operator's first name for it, else where it listens.
        self.default = settings.allowed_hosts[0] if settings.allowed_hosts else str(listen)
        if self._any and not settings.allowed_hosts:
            self.default = "localhost"

    def allow(self, host: str) -> bool:
        if self._any:
            return True
        host = host.lower()
        if host in self._exact or host in self._names:
            return True
        return _name_of(host) in self._names


class BrowserGuard:
    """The browser rules of one config; `refusing` is False on a team gateway (clients set)."""

    __slots__ = ("hosts", "refusing")

    def __init__(self, settings: Settings, bound_port: int) -> None:
        self.hosts = HostNames(settings, bound_port)
        self.refusing = not settings.clients

    def admit(self, request: web.BaseRequest) -> tuple[web.BaseRequest, web.Response | None]:
        """The request to serve (its Host replaced when it may not be reflected), or a refusal."""
        host = request.headers.get("Host")
        if host is not None and self.hosts.allow(host):
            return request, None
        if host is not None and self.refusing:
            return request, refused(
                "host-not-allowed",
                "the Host header names neither this machine nor an entry of allowed_hosts; "
                "add the name you use for the proxy to allowed_hosts",
            )
        # A gateway client's Host (or a missing one) never ends up in a Location or
        # X-Forwarded-Host that the upstream or the client trusts.
        return request.clone(host=self.hosts.default), None

    def cross_site(
        self, headers: CIMultiDictProxy[str], cors: CorsSettings | None
    ) -> web.Response | None:
        """403 for a request a web page of another origin made, unless `cors` lists that origin."""
        if not self.refusing:
            return None
        origin = headers.get("Origin")
        if origin is not None and cors is not None and origin.lower() in cors.origins:
            return None
        if headers.get("Sec-Fetch-Site", "").lower() in ("cross-site", "same-site"):
            return refused(
                "cross-site-request",
                "the browser sent this request for a page of another site (Sec-Fetch-Site); "
                "list that page's origin in the route's cors.origins to allow it",
            )
        if origin is not None and origin.lower() != f"http://{headers.get('Host', '')}".lower():
            return refused(
                "cross-site-request",
                "the request comes from a page of another origin; "
                "list that origin in the route's cors.origins to allow it",
            )
        return None

    def preflight(
        self, headers: CIMultiDictProxy[str], cors: CorsSettings | None
    ) -> web.Response | None:
        """The answer to a CORS preflight: 204 for a listed origin asking for what the route
        allows; else 403, or None on a gateway (the request then needs a client key)."""
        answer = preflight_answer(headers, cors)
        if answer is None and self.refusing:
            return refused(
                "cross-site-request",
                "this origin, method or header is not allowed by the route's cors settings",
            )
        return answer


def is_preflight(request: web.BaseRequest) -> bool:
    """A CORS preflight (Fetch §4.8): OPTIONS with Origin and Access-Control-Request-Method."""
    headers = request.headers
    return (
        request.method == "OPTIONS"
        and "Origin" in headers
        and "Access-Control-Request-Method" in headers
    )


def preflight_answer(
    headers: CIMultiDictProxy[str], cors: CorsSettings | None
) -> web.Response | None:
    """204 with the Access-Control-Allow-* headers, or None when `cors` does not allow it."""
    origin = headers.get("Origin", "")
    if cors is None or origin.lower() not in cors.origins:
        return None
    if headers.get("Access-Control-Request-Method", "").upper() not in cors.methods:
        return None
    requested = [
        name.strip().lower()
        for name in headers.get("Access-Control-Request-Headers", "").split(",")
        if name.strip()
    ]
    if any(name not in cors.headers and name not in SAFELISTED_HEADERS for name in requested):
        return None
    allowed = {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ", ".join(cors.methods),
        "Access-Control-Max-Age": str(cors.max_age),
        "Vary": _PREFLIGHT_VARY,
    }
    if names := ", ".join(dict.fromkeys([*cors.headers, *requested])):
        allowed["Access-Control-Allow-Headers"] = names
    # Chrome's Private Network Access: a public page may call a loopback service only when
    # the service agrees; a listed origin is one the operator chose.
    if headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        allowed["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=allowed, body=b"")


def answer_headers(headers: CIMultiDictProxy[str], cors: CorsSettings | None) -> AnswerHeaders:
    """Headers for the answer on a route with `cors`: the listed origin may read it."""
    if cors is None:
        return NO_HEADERS
    origin = headers.get("Origin")
    if origin is not None and origin.lower() in cors.origins:
        return (("Access-Control-Allow-Origin", origin), *VARY_ORIGIN)
    # Answers differ by Origin on this route: a cache must not give one origin's to another.
    return VARY_ORIGIN


def refused(kind: str, detail: str) -> web.Response:
    return problem_response(403, detail, kind=kind)
