"""The engine-facing Reporter interface, shared bookkeeping, and the quiet reporter.

The engine calls ``start`` once, ``update`` a few times a second with a fresh
snapshot, ``event`` for discrete happenings, and ``close`` at the end. Every
method must be cheap and must never raise because of odd snapshot values:
a viewer is not allowed to stop a transfer. (Writing to a closed pipe does
raise: the consumer is gone, and the CLI turns BrokenPipeError into exit 0.)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from swarm.status import TorrentStatus

from . import events as ev

Clock = Callable[[], float]


#: Seconds a snapshot's ``stalled_reason`` must hold before it becomes a ``stalled`` event.
STALL_GRACE = 10.0


class Reporter:
    """Base class: remembers the latest snapshot and fills event fields from it."""

    mode = "base"

    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self.status: TorrentStatus | None = None
        self._stall_since: float | None = None
        self._stall_reason: str | None = None
        self._stall_told = False

    # --- the API the engine calls -----------------------------------------
    def start(self, status: TorrentStatus, **fields: object) -> None:
        """The torrent is known; ``fields`` (magnet, torrent, path) go into the ``added`` event."""
        self.status = status

    def update(self, status: TorrentStatus) -> None:
        self.status = status

    def event(self, kind: str, **fields: object) -> None:
        """A discrete event; ``kind`` is one of ``swarm.ui.events.EVENT_KINDS``."""

    def close(self, status: TorrentStatus | None = None) -> None:
        if status is not None:
            self.status = status

    # --- helpers ------------------------------------------------------------
    @property
    def info_hash(self) -> str | None:
        return self.status.info_hash if self.status is not None else None

    def fill(self, kind: str, fields: dict[str, object]) -> dict[str, object]:
        """Required fields the engine left out, taken from the last snapshot."""
        s = self.status
        if kind == ev.ERROR:
            fields.setdefault("message", "unknown error")
            fields.setdefault("fatal", False)
        if s is None:
            return fields
        if kind == ev.DONE:
            fields.setdefault("name", s.name)
            fields.setdefault("total_size", s.total_size)
            fields.setdefault("downloaded", s.downloaded)
            fields.setdefault("uploaded", s.uploaded)
            fields.setdefault("elapsed", self.elapsed(s))
        elif kind == ev.METADATA:
            fields.setdefault("name", s.name)
            fields.setdefault("total_size", s.total_size)
            fields.setdefault("num_pieces", s.num_pieces)
            fields.setdefault("piece_length", s.piece_length)
        elif kind == ev.STALLED:
            fields.setdefault("reason", s.stalled_reason or "no progress")
        return fields

    def stall_event(self, s: TorrentStatus, now: float) -> str | None:
        """The reason to report once a stall has lasted ``STALL_GRACE`` seconds, else None.

        Derived from snapshots so that scripts get a ``stalled`` event even
        from an engine that only fills ``stalled_reason``; once per stretch
        (a new reason starts a new stretch), and not if the engine already
        sent one itself (``note_stall``).
        """
        reason = s.stalled_reason
        if reason is None:
            self._stall_since, self._stall_reason, self._stall_told = None, None, False
            return None
        if reason != self._stall_reason:
            self._stall_since, self._stall_reason, self._stall_told = now, reason, False
        if not self._stall_told and self._stall_since is not None and now - self._stall_since >= STALL_GRACE:
            self._stall_told = True
            return reason
        return None

    def note_stall(self, fields: dict[str, object]) -> None:
        """The engine sent ``stalled`` itself: don't derive another for the same stretch."""
        self._stall_reason = str(fields.get("reason"))
        self._stall_since = self.clock()
        self._stall_told = True

    def elapsed(self, s: TorrentStatus) -> float:
        return round(max(0.0, self.clock() - s.started_at), 3) if s.started_at else 0.0


class QuietReporter(Reporter):
    """``-q``: nothing but error events, one line each on stderr."""

    mode = "quiet"

    def __init__(self, *, err_stream: TextIO | None = None, clock: Clock = time.time) -> None:
        super().__init__(clock=clock)
        self.err = err_stream

    def event(self, kind: str, **fields: object) -> None:
        if kind == ev.ERROR:
            self.fill(kind, fields)
            err = self.err or sys.stderr
            err.write(f"swarm: error: {fields['message']}\n")
            err.flush()
