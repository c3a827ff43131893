"""Plain log lines for when stdout is not a terminal (pipes, CI logs).

One timestamped line per event, and a progress line every ``interval``
seconds (and whenever the state changes), so a log of an hour-long download
stays short and greppable. Errors go to stderr as well as the log.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from swarm.status import TorrentStatus

from . import events as ev
from .format import clock_text, event_text, progress_line, summary_line
from .reporter import Clock, Reporter

#: Seconds between repeats of an unchanged progress line.
IDLE_REPEAT = 60.0


class PlainReporter(Reporter):
    mode = "plain"

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        err_stream: TextIO | None = None,
        clock: Clock = time.time,
        interval: float = 5.0,
    ) -> None:
        super().__init__(clock=clock)
        self.stream = stream if stream is not None else sys.stdout
        # Errors are duplicated to stderr only when the log is stdout itself.
        self.err = err_stream if err_stream is not None else (sys.stderr if stream is None else None)
        self.interval = interval
        self._last_line = 0.0
        self._last_state: str | None = None
        self._last_text = ""
        #: the torrent's name in front of every line when one log carries several (seed A B C)
        self.label = ""

    def _write(self, text: str, now: float | None = None) -> None:
        stamp = clock_text(self.clock() if now is None else now)
        label = f"{self.label}: " if self.label else ""
        self.stream.write(f"[{stamp}] {label}{text}\n")
        self.stream.flush()

    def start(self, status: TorrentStatus, **fields: object) -> None:
        super().start(status)
        now = self.clock()
        self._last_line = now
        self._last_state = status.state
        info = {
            "name": status.name,
            "total_size": status.total_size,
            "num_pieces": status.num_pieces,
            "piece_length": status.piece_length,
            "info_hash": status.info_hash,
            **fields,
        }
        self._write(event_text(ev.ADDED, info), now)

    def update(self, status: TorrentStatus) -> None:
        self.status = status
        now = self.clock()
        stalled = self.stall_event(status, now)
        if stalled is not None:
            self._write(event_text(ev.STALLED, {"reason": stalled}), now)
        # 50 ms slack: an engine ticking every 250 ms with jitter still reports every interval.
        if status.state != self._last_state or now - self._last_line >= self.interval - 0.05:
            text = progress_line(status)
            # An idle seed would repeat the same line all day: say it once a minute.
            if (
                status.state == "seeding"
                and text == self._last_text
                and status.state == self._last_state
                and now - self._last_line < IDLE_REPEAT
            ):
                return
            self._last_state = status.state
            self._last_line = now
            self._last_text = text
            self._write(text, now)

    def event(self, kind: str, **fields: object) -> None:
        if kind == ev.PIECE and fields.get("action") == "verified":
            return  # thousands per download: the progress lines cover them
        self.fill(kind, fields)
        if kind == ev.STALLED:
            self.note_stall(fields)
        text = event_text(kind, fields)
        self._write(text)
        if kind == ev.ERROR and self.err is not None:
            self.err.write(f"swarm: error: {fields['message']}\n")
            self.err.flush()

    def close(self, status: TorrentStatus | None = None) -> None:
        super().close(status)
        if self.status is not None:
            self._write(summary_line(self.status, self.clock()))
