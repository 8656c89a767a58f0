"""Where a login or refresh call goes: a path on the route's upstream origin, or an absolute URL.

Identity providers live elsewhere than the APIs they issue tokens for (Auth0, Okta, Entra ID,
Keycloak: RFC 6749 §3.2's token endpoint on its own host), so a call may name an absolute http(s)
URL. Such a URL is checked when the config loads, and the driver sends to it through a client of
that origin alone, so the credentials go to the configured URL and nowhere else.
"""

from __future__ import annotations

from yarl import URL

from authproxy.auth_spec import AuthSpec

# An origin as a connection sees it: scheme, host and effective port (`https://h` is `:443`).
OriginKey = tuple[str, str, int | None]

_SCHEMES = ("http://", "https://")


def absolute_url(text: str) -> str:
    """`text` checked as a token or login URL and normalised; raises ValueError saying why not.

    No user or password (aiohttp would turn them into a Basic header of its own), no fragment
    (never sent, so a sign of a pasted browser URL); a query is kept, as some providers need one.
    """
    try:
        url = URL(text)
        url.port  # noqa: B018 - yarl checks the port only when it is read
    except ValueError:
        raise ValueError("not a valid URL") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("not an absolute http(s) URL, e.g. https://login.example.com/oauth/token")
    if url.user is not None or url.password is not None:
        raise ValueError("must not hold a user or password; give them as credentials")
    if url.fragment or "#" in text:
        raise ValueError("must not have a fragment")
    return str(url)


def is_absolute(target: str) -> bool:
    """True for an absolute URL, False for a path on the upstream's origin."""
    return target.lower().startswith(_SCHEMES)


def origin_key(url: URL) -> OriginKey:
    return (url.scheme, url.host or "", url.port)


def elsewhere(spec: AuthSpec, upstream: URL) -> tuple[URL, ...]:
    """The origins other than `upstream`'s that `spec`'s login and refresh calls go to."""
    requests = [spec.login, spec.refresh.request if spec.refresh else None]
    home = origin_key(upstream)
    found: dict[OriginKey, URL] = {}
    for request in requests:
        if request is not None and is_absolute(request.path):
            origin = URL(request.path, encoded=True).origin()
            if origin_key(origin) != home:
                found.setdefault(origin_key(origin), origin)
    return tuple(found.values())
