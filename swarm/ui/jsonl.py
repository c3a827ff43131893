"""``--json``: one JSON object per line, schema in docs/json-events.md (stable, additive only).

Each line is flushed as written so a script reading the pipe sees events
as they happen. Values that JSON cannot carry (NaN, bytes, paths) are
turned into null or strings rather than breaking the stream.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import TextIO, cast

from swarm.status import TorrentStatus

from . import events as ev
from .format import fraction_done
from .reporter import Clock, Reporter


def _default(o: object) -> object:
    if isinstance(o, bytes | bytearray | memoryview):
        return bytes(o).hex()
    if isinstance(o, set | frozenset | tuple):
        return list(o)
    return str(o)


def _clean(v: object) -> object:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def dumps(obj: dict[str, object]) -> str:
    """Compact JSON; never NaN/Infinity (invalid JSON) whatever the engine hands us."""
    try:
        return json.dumps(obj, default=_default, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(_clean(obj), default=_default, allow_nan=False, separators=(",", ":"))


def progress_fields(s: TorrentStatus) -> dict[str, object]:
    fields: dict[str, object] = {
        "state": s.state,
        "progress": round(fraction_done(s), 6),
        "verified": s.verified,
        "total_size": s.total_size,
        "down_rate": round(s.down_rate, 1),
        "up_rate": round(s.up_rate, 1),
        "downloaded": s.downloaded,
        "uploaded": s.uploaded,
        "peers": len(s.peers),
        "seeds": s.seeds,
        "eta": None if s.eta is None else round(s.eta, 1),
        "wasted": int(cast(int, s.extra.get("wasted", 0))),
    }
    if s.stalled_reason:
        fields["stalled_reason"] = s.stalled_reason
    tasks = _task_count()
    if tasks is not None:
        fields["tasks"] = tasks
    return fields


def _task_count() -> int | None:
    """Live asyncio tasks of the running loop: a soak test watches it return to baseline."""
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a reporter driven from plain code)
        return None


class JsonReporter(Reporter):
    mode = "json"

    def __init__(
        self, *, stream: TextIO | None = None, clock: Clock = time.time, interval: float = 1.0
    ) -> None:
        super().__init__(clock=clock)
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        self._last_progress = 0.0
        self._last_state: str | None = None
        self._last_flush = 0.0

    def emit(self, kind: str, fields: dict[str, object], now: float | None = None) -> None:
        obj: dict[str, object] = {
            "event": kind,
            "time": round(self.clock() if now is None else now, 3),
            "info_hash": self.info_hash,
        }
        omit = ev.OMIT_IF_NONE.get(kind, frozenset())
        for k, v in fields.items():
            if k not in obj and not (v is None and k in omit):
                obj[k] = v
        self.stream.write(dumps(obj) + "\n")
        # One line per verified piece is thousands of lines per GiB; a flush (a
        # syscall, and a GIL hand-off against the hashing threads) for each cost
        # ~0.25 CPU-s/GiB. Piece lines are flushed at most every 0.1 s; every
        # other event flushes at once, carrying any piece lines before it.
        t = time.monotonic()
        if kind != ev.PIECE or t - self._last_flush >= 0.1:
            self.stream.flush()
            self._last_flush = t

    def start(self, status: TorrentStatus, **fields: object) -> None:
        super().start(status)
        now = self.clock()
        self._last_progress = now
        self._last_state = status.state
        self.emit(
            ev.ADDED,
            {
                "name": status.name,
                "state": status.state,
                "total_size": status.total_size,
                "num_pieces": status.num_pieces,
                "piece_length": status.piece_length,
                **fields,
            },
            now,
        )

    def update(self, status: TorrentStatus) -> None:
        # 50 ms slack: an engine ticking every 250 ms with jitter still reports every interval.
        self.status = status
        now = self.clock()
        stalled = self.stall_event(status, now)
        if stalled is not None:
            self.emit(ev.STALLED, {"reason": stalled}, now)
        if status.state != self._last_state or now - self._last_progress >= self.interval - 0.05:
            self._last_state = status.state
            self._last_progress = now
            self.emit(ev.PROGRESS, progress_fields(status), now)

    def event(self, kind: str, **fields: object) -> None:
        self.fill(kind, fields)
        if kind == ev.STALLED:
            self.note_stall(fields)
        self.emit(kind, fields)

    def close(self, status: TorrentStatus | None = None) -> None:
        super().close(status)
        s = self.status
        if s is None:
            return
        now = self.clock()
        self.emit(ev.PROGRESS, progress_fields(s), now)
        self.emit(
            ev.SUMMARY,
            {
                "state": s.state,
                "complete": s.total_size > 0 and s.verified >= s.total_size,
                "verified": s.verified,
                "total_size": s.total_size,
                "downloaded": s.downloaded,
                "uploaded": s.uploaded,
                "elapsed": self.elapsed(s),
                "ratio": round(s.ratio, 4),
            },
            now,
        )
