"""The only network code in `auth/`: sends a flow's calls to the upstream and feeds back replies.

Login answers are read whole but bounded (an upstream that streams gigabytes at a login endpoint
gets a clean failure, not our memory), and transport failures become `LoginUnavailable`. One run of
a flow has its own deadline (`auth.timeout`), from connecting to the parsed answer: a login
endpoint that never answers must not hold the requests waiting on it for the route's read timeout.
"""

from __future__ import annotations

import asyncio

from aiohttp import ClientError, ClientSession, ClientTimeout
from aiohttp.streams import StreamReader
from yarl import URL

from authproxy.auth.flow import Flow, HttpCall, HttpReply
from authproxy.auth.grant import Grant
from authproxy.errors import LoginTimeout, LoginUnavailable, UpstreamFailure, upstream_error

MAX_ANSWER_BYTES = 1024 * 1024


class AuthDriver:
    """Runs flows for one route against its upstream origin.

    Login paths are absolute paths on the upstream's origin (`/v1/authenticate`), as each API
    documents them, whatever base path the route forwards to.
    """

    def __init__(
        self,
        route: str,
        session: ClientSession,
        origin: URL,
        timeout: ClientTimeout,
        deadline: float = 30.0,
    ):
        self.route = route
        self._session = session
        self._origin = origin
        self._timeout = timeout
        self._deadline = deadline

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

    async def _send(self, call: HttpCall) -> HttpReply:
        path = call.path if call.path.startswith("/") else "/" + call.path
        url = URL(str(self._origin) + path, encoded=True)
        try:
            async with self._session.request(
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
