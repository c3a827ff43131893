"""``GET /api/events``: the ``--json`` events of every torrent, fanned out to each listener.

Each torrent's ``JsonReporter`` writes its lines here as if this were stdout;
every subscriber gets its own bounded queue. A listener too slow to keep up
is dropped (its stream ends) rather than letting the daemon's memory grow.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

#: Lines queued per listener before it is dropped.
QUEUE_LINES = 4096


class EventHub:
    """A write-only text stream that copies each complete line to every subscriber (and ``echo``)."""

    def __init__(self, echo: TextIO | None = None) -> None:
        self.echo = echo
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._partial = ""

    def write(self, text: str) -> int:
        if self.echo is not None:
            self.echo.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self.publish(line)
        return len(text)

    def flush(self) -> None:
        if self.echo is not None:
            self.echo.flush()

    def publish(self, line: str) -> None:
        for q in list(self._subscribers):
            try:
                q.put_nowait(line)
            except asyncio.QueueFull:
                self.unsubscribe(q)
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(None)  # the end of this listener's stream

    def subscribe(self) -> asyncio.Queue[str | None]:
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_LINES)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[str | None]) -> None:
        self._subscribers.discard(q)

    def close(self) -> None:
        """End every listener's stream (the daemon stops)."""
        for q in list(self._subscribers):
            self.unsubscribe(q)
            try:
                q.put_nowait(None)
            except asyncio.QueueFull:
                pass
