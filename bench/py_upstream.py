"""Fallback upstream when nginx cannot be installed: aiohttp's low-level server, no routing layer.

Same contract as the nginx upstream (see nginx_conf.py): `/1k`, `/100m`, `PUT /upload`, and
`POST /v1/authenticate`, with 401 on data paths unless the exact Bearer token is sent. It also
answers `GET /_logins` with the login count. Usage: `python bench/py_upstream.py PORT TOKEN
[DELAY_MS]`: with a delay, `/1k` answers that many milliseconds late (the far upstream: an API
across a network, where the proxy waits instead of working).
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

from common import DOWNLOAD_BYTES, SMALL_BYTES

CHUNK = b"x" * 65536


class Upstream:
    def __init__(self, token: str, delay: float = 0.0) -> None:
        self.delay = delay
        self.expected = f"Bearer {token}"
        self.login_body = json.dumps({"token": token}).encode()
        self.small = b"x" * SMALL_BYTES
        self.logins = 0

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/v1/authenticate" and request.method == "POST":
            await request.read()
            self.logins += 1
            return web.Response(body=self.login_body, content_type="application/json")
        if path == "/_logins":
            return web.Response(text=str(self.logins))
        if request.headers.get("Authorization") != self.expected:
            return web.Response(status=401)
        if path == "/1k":
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(body=self.small)
        if path == "/100m":
            return await self._download(request)
        if path == "/upload" and request.method == "PUT":
            # Read to the end before answering: the client's timer stops at the answer.
            while await request.content.readany():
                pass
            return web.Response(status=204)
        return web.Response(status=404)

    async def _download(self, request: web.BaseRequest) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(DOWNLOAD_BYTES)})
        await response.prepare(request)
        for _ in range(DOWNLOAD_BYTES // len(CHUNK)):
            await response.write(CHUNK)
        await response.write_eof()
        return response


async def serve(port: int, token: str, delay: float) -> None:
    server = web.Server(Upstream(token, delay).handle, access_log=None)
    runner = web.ServerRunner(server)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=4096).start()
    await asyncio.Event().wait()


def main() -> None:
    factory = None
    try:
        import uvloop  # the fallback must not be the bottleneck: take the fastest loop there is

        factory = uvloop.new_event_loop
    except ImportError:
        pass
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            delay_ms = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
            runner.run(serve(int(sys.argv[1]), sys.argv[2], delay_ms / 1000))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
