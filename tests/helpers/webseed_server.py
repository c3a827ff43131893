"""A Range-capable HTTP origin for web seed tests (aiohttp), with ways to misbehave."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import unquote

from aiohttp import web

RANGE = re.compile(r"bytes=(\d+)-(\d+)$")


class Origin:
    """Serves files under ``root`` at ``/<path>`` with single Range requests.

    ``mode``: "ok", "corrupt" (every answer's bytes flipped), "error" (500) or "stall"
    (headers and half the body, then nothing until the server closes).
    ``served`` counts the payload bytes sent, ``requests`` the requests answered.
    """

    def __init__(self, root: Path, mode: str = "ok") -> None:
        self.root = root.resolve()
        self.mode = mode
        self.served = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.mode == "error":
            return web.Response(status=500, text="boom")
        path = (self.root / unquote(request.match_info["tail"])).resolve()
        if not path.is_file() or self.root not in path.parents:
            return web.Response(status=404)
        data = path.read_bytes()
        m = RANGE.match(request.headers.get("Range", ""))
        if m is None:
            body, status, headers = data, 200, {}
        else:
            start, end = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
            body, status = data[start : end + 1], 206
            headers = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
        if self.mode == "corrupt":
            body = bytes(b ^ 0xFF for b in body)
        if self.mode == "stall":
            resp = web.StreamResponse(status=status, headers=headers)
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            self.served += len(body) // 2
            await self._closing.wait()
            return resp
        self.served += len(body)
        return web.Response(body=body, status=status, headers=headers)

    async def __aenter__(self) -> Origin:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
