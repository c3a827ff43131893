"""The listening side shared by the tests' fake seeds: start, close, count and track connections."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Self


class LocalPeerServer:
    """Listens on 127.0.0.1:0; each connection runs ``_session`` as a tracked task.

    ``close`` cancels the connection tasks and awaits each one (for at most
    ``close_wait`` seconds if that is set). Subclasses call ``super().__init__()``
    and implement ``_session``; its ``writer`` is closed when it returns.
    """

    close_wait: float | None = None

    def __init__(self) -> None:
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                if self.close_wait is None:
                    await t
                else:
                    await asyncio.wait_for(t, self.close_wait)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        try:
            await self._session(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError
