"""The floor: the simplest aiohttp reverse proxy one would write, with no auth and no tuning.

One `web.Application` with a catch-all route, one `ClientSession`, headers copied minus hop-by-hop
and Host, the request body passed as a stream, the answer copied back chunk by chunk. Default
asyncio loop. Usage: `python bench/naive_proxy.py UPSTREAM_URL`; it prints one JSON line with its
URL once it listens on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator

from aiohttp import ClientSession, web

SESSION = web.AppKey("session", ClientSession)

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
    }
)


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=1024**3)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = ClientSession(auto_decompress=False)
        yield
        await app[SESSION].close()

    async def handle(request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        async with app[SESSION].request(
            request.method,
            upstream + request.path_qs,
            headers=headers,
            data=request.content if request.body_exists else None,
            allow_redirects=False,
        ) as resp:
            out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_BY_HOP}
            response = web.StreamResponse(status=resp.status, headers=out)
            await response.prepare(request)
            async for chunk in resp.content.iter_chunked(65536):
                await response.write(chunk)
            await response.write_eof()
            return response

    app.cleanup_ctx.append(session_ctx)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


async def serve(upstream: str) -> None:
    runner = web.AppRunner(make_app(upstream), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    print(json.dumps({"event": "naive listening", "url": f"http://{host}:{port}"}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(sys.argv[1].rstrip("/")))


if __name__ == "__main__":
    main()
