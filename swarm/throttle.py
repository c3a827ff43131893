"""The session's rate limits (--max-up, --max-down), for peers and web seeds together.

Downloads: after a read, ``received`` takes its payload from the down
bucket; a bucket in debt pauses the reading side of that connection
(``transport.pause_reading``: the kernel's receive window then slows the
sender) and one timer resumes every paused connection once the debt is
repaid. Web seeds ``await download(n)`` between chunks. Uploads: each
block ``await``s ``upload(n)`` before it is read and sent, so the upload
queue simply stops being served. No polling, no extra buffering: the
decisions are ``swarm.core.ratelimit``'s.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from swarm.core.ratelimit import RateLimit


class Throttle:
    """Both directions' buckets and the connections paused by the down one."""

    def __init__(self, max_up: int = 0, max_down: int = 0) -> None:
        now = time.monotonic()
        self.up = RateLimit(max_up, now)
        self.down = RateLimit(max_down, now)
        self._paused: set[Any] = set()
        self._timer: asyncio.TimerHandle | None = None

    def received(self, conn: Any, nbytes: int) -> None:
        """Payload just read from ``conn``: pause its reading while the bucket is in debt."""
        down = self.down
        if down.unlimited:
            return
        now = time.monotonic()
        down.consume(nbytes, now)
        delay = down.wait(now)
        if delay <= 0:
            return
        transport = getattr(conn, "transport", None)
        if transport is None or transport.is_closing():
            return
        transport.pause_reading()
        self._paused.add(conn)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._resume)

    def _resume(self) -> None:
        self._timer = None
        delay = self.down.wait(time.monotonic())
        if delay > 0:  # more debt came in meanwhile (a web seed): wait for it
            self._timer = asyncio.get_running_loop().call_later(delay, self._resume)
            return
        paused, self._paused = self._paused, set()
        for conn in paused:
            transport = getattr(conn, "transport", None)
            if transport is not None and not transport.is_closing() and not getattr(conn, "closed", False):
                transport.resume_reading()

    async def download(self, nbytes: int) -> None:
        """A web seed's chunk: counted, then wait while the bucket is in debt."""
        if self.down.unlimited:
            return
        now = time.monotonic()
        self.down.consume(nbytes, now)
        delay = self.down.wait(now)
        if delay > 0:
            await asyncio.sleep(delay)

    async def upload(self, nbytes: int) -> None:
        """Before sending a block: wait for its share of the up bucket."""
        if self.up.unlimited:
            return
        delay = self.up.reserve(nbytes, time.monotonic())
        if delay > 0:
            await asyncio.sleep(delay)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._paused.clear()
