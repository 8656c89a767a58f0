"""The only network code in `auth/`: sends a flow's calls to the upstream and feeds back replies.

Login answers are read whole but bounded (an upstream that streams gigabytes at a login endpoint
gets a clean failure, not our memory), and transport failures become `LoginUnavailable`. One run of
a flow has its own deadline (`auth.timeout`), from connecting to the parsed answer: a login
endpoint that never answers must not hold the requests waiting on it for the route's read timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import ClientError, ClientSession, ClientTimeout
from aiohttp.streams import StreamReader
from yarl import URL

from authproxy.auth.endpoints import OriginKey, is_absolute, origin_key
from authproxy.auth.flow import Flow, HttpCall, HttpReply
from authproxy.auth.grant import Grant
from authproxy.errors import LoginTimeout, LoginUnavailable, UpstreamFailure, upstream_error

MAX_ANSWER_BYTES = 1024 * 1024


class AuthDriver:
    """Runs flows for one route against its upstream origin, and the origins it logs in at.

    Login paths are absolute paths on the upstream's origin (`/v1/authenticate`), as each API
    documents them, whatever base path the route forwards to. An absolute URL (a token endpoint
    elsewhere) goes through the session given for its origin in `elsewhere`: each session refuses
    every other origin, and no call follows a redirect, so credentials reach only the URL
    configured for them.
    """

    def __init__(
        self,
        route: str,
        session: ClientSession,
        origin: URL,
        timeout: ClientTimeout,
        deadline: float = 30.0,
        elsewhere: Sequence[tuple[URL, ClientSession]] = (),
    ):
        self.route = route
        self._session = session
        self._origin = origin
        self._timeout = timeout
        self._deadline = deadline
        self._sessions: dict[OriginKey, ClientSession] = {origin_key(origin): session}
        self._sessions.update((origin_key(url), client) for url, client in elsewhere)

    async def run(self, flow: Flow) -> Grant:
        """Drive `flow` to its Grant within the deadline; raises LoginFailed (LoginTimeout)."""
        try:
            async with asyncio.timeout(self._deadline):
                return await self._drive(flow)
        except TimeoutError:
            raise self._timed_out() from None

    async def _drive(self, flow: Flow) -> Grant:
        call = next(flow)
        while True:
            reply = await self._send(call)
            try:
                call = flow.send(reply)
            except StopIteration as done:
                grant: Grant = done.value
                return grant

    def _timed_out(self) -> LoginTimeout:
        return LoginTimeout(self.route, f"the login did not finish within {self._deadline:g} s")

    def _target(self, path: str) -> tuple[URL, ClientSession]:
        if not is_absolute(path):
            path = path if path.startswith("/") else "/" + path
            return URL(str(self._origin) + path, encoded=True), self._session
        url = URL(path, encoded=True)
        session = self._sessions.get(origin_key(url))
        if session is None:  # the composition root gives one for every origin a flow names
            raise LoginUnavailable(self.route, "no client is set up for the login URL's origin")
        return url, session

    async def _send(self, call: HttpCall) -> HttpReply:
        url, session = self._target(call.path)
        try:
            async with session.request(
                call.method,
                url,
                headers=dict(call.headers),
                data=call.body or None,
                allow_redirects=False,
                timeout=self._timeout,
            ) as response:
                body = await _read_bounded(response.content)
                if body is None:
                    raise LoginUnavailable(
                        self.route, "the login answer is larger than 1 MiB", response.status
                    )
                headers = {name.lower(): value for name, value in response.headers.items()}
                return HttpReply(response.status, headers, body)
        except (ClientError, TimeoutError, UpstreamFailure) as error:
            # A TimeoutError: the route's own read timeout ran out first (shorter than
            # auth.timeout). An UpstreamFailure: the outbound proxy refused (upstream/proxied.py).
            raise upstream_error(self.route, error, login=True) from None


async def _read_bounded(content: StreamReader) -> bytes | None:
    """The whole body, or None once it grows past MAX_ANSWER_BYTES."""
    parts: list[bytes] = []
    size = 0
    async for chunk in content.iter_any():
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            return None
        parts.append(chunk)
    return b"".join(parts)
