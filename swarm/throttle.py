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
import contextlib
import socket
import time
import weakref
from typing import Any

from swarm.core.rate import DEFAULT_QUEUE_TIME
from swarm.core.ratelimit import RateLimit
from swarm.core.wire import BLOCK_SIZE

#: Receive buffer of a throttled connection, in seconds of the limit (bounded).
RCVBUF_SECONDS = 0.1
RCVBUF_MIN = 16 * 1024
RCVBUF_MAX = 4 * 1024 * 1024


class Throttle:
    """Both directions' buckets and the connections paused by the down one."""

    def __init__(self, max_up: int = 0, max_down: int = 0) -> None:
        now = time.monotonic()
        self.up = RateLimit(max_up, now)
        self.down = RateLimit(max_down, now)
        self._paused: set[Any] = set()
        self._tuned: weakref.WeakSet[Any] = weakref.WeakSet()
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
        if conn not in self._tuned:
            self._tuned.add(conn)
            self._shrink_receive_buffer(transport)
        transport.pause_reading()
        self._paused.add(conn)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(delay, self._resume)

    def _shrink_receive_buffer(self, transport: Any) -> None:
        """A throttled socket's kernel buffer of about RCVBUF_SECONDS of the rate: what
        piles up while reading is paused, and so the next read, stays small (a read of
        256 KiB at 256 KiB/s would alone break the 10 % bound over 5 s)."""
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        size = int(min(RCVBUF_MAX, max(RCVBUF_MIN, self.down.rate * RCVBUF_SECONDS)))
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

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

    def cap_depth(self, depth: int) -> int:
        """A peer's request pipeline under --max-down: at most ``DEFAULT_QUEUE_TIME``
        (3 s) of the allowed rate, whatever the slow start has grown to."""
        cap = self.down.depth_cap(DEFAULT_QUEUE_TIME, BLOCK_SIZE)
        return depth if cap is None or depth <= cap else cap

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._paused.clear()
