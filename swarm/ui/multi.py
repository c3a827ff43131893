"""Several torrents in one display: ``swarm seed A B C`` (and the daemon's event stream).

``--json`` and plain lines reuse one single-torrent reporter per torrent on
the same stream (each JSON object carries its own ``info_hash``; each plain
line starts with the torrent's name). On a terminal, one live table: a row
per torrent (name, state, progress, size, rates, peers, ETA) and a totals row.
Events about no particular torrent (``listening``) go out once.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, TextIO

from swarm.status import TorrentStatus

from . import events as ev
from .format import (
    clip,
    clock_text,
    event_text,
    fraction_done,
    human_eta,
    human_rate,
    human_size,
    percent,
    safe,
    summary_line,
)
from .reporter import Clock, Reporter

if TYPE_CHECKING:
    from rich.console import Console

#: Width of every column but the name, and their headings.
COLUMNS = (("state", 11), ("done", 7), ("size", 10), ("down", 12), ("up", 12), ("peers", 5), ("eta", 7))


def table_lines(statuses: list[TorrentStatus], width: int) -> list[str]:
    """A header, a row per torrent and a totals row, each at most ``width`` cells (pure: tested)."""
    fixed = sum(w + 1 for _, w in COLUMNS)
    name_w = max(8, width - fixed)

    def row(name: str, cells: list[str]) -> str:
        out = f"{clip(name, name_w):<{name_w}}"
        for (_, w), cell in zip(COLUMNS, cells, strict=True):
            out += f" {clip(cell, w):>{w}}"
        return out[:width]

    lines = [row("name", [h for h, _ in COLUMNS])]
    for s in statuses:
        lines.append(
            row(
                safe(s.name),
                [
                    safe(s.state), percent(fraction_done(s)), human_size(s.total_size),
                    human_rate(s.down_rate), human_rate(s.up_rate), str(len(s.peers)), human_eta(s),
                ],
            )
        )
    total = sum(s.total_size for s in statuses)
    verified = sum(s.verified for s in statuses)
    lines.append(
        row(
            f"total ({len(statuses)} torrents)",
            [
                "", percent(verified / total if total else 1.0), human_size(total),
                human_rate(sum(s.down_rate for s in statuses)), human_rate(sum(s.up_rate for s in statuses)),
                str(sum(len(s.peers) for s in statuses)), "",
            ],
        )
    )
    return lines


class MultiReporter:
    """The Reporter calls with a torrent's info-hash in front; ``make_reporter`` modes."""

    def __init__(self, mode: str, *, stream: TextIO | None = None, clock: Clock = time.time) -> None:
        self.mode = mode
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.reporters: dict[str, Reporter] = {}
        self.statuses: dict[str, TorrentStatus] = {}
        self._live: object | None = None
        self._rich: Console | None = None

    def _single(self, status: TorrentStatus | None = None) -> Reporter:
        from . import make_reporter

        rep = make_reporter(self.mode, stream=self.stream, clock=self.clock)
        if status is not None and self.mode == "plain":
            rep.label = safe(status.name)  # type: ignore[attr-defined]
        return rep

    def start(self, status: TorrentStatus, **fields: object) -> None:
        self.statuses[status.info_hash] = status
        if self.mode == "live":
            text = event_text(ev.ADDED, {"name": status.name, "info_hash": status.info_hash, **fields})
            self._print(text)
            return
        rep = self.reporters[status.info_hash] = self._single(status)
        rep.start(status, **fields)

    def event(self, info_hash: str | None, kind: str, **fields: object) -> None:
        """An event of one torrent, or of none (``info_hash`` None: said once)."""
        if self.mode == "live":
            if kind in (ev.ERROR, ev.DONE, ev.LISTENING):
                name = self.statuses[info_hash].name if info_hash in self.statuses else None
                prefix = f"{safe(name)}: " if name else ""
                self._print(f"[{clock_text(self.clock())}] {prefix}{event_text(kind, fields)}")
            return
        rep = self.reporters.get(info_hash or "") or self._single()
        rep.event(kind, **fields)

    def update(self, statuses: list[TorrentStatus], *, complete: bool = False) -> None:
        """Fresh snapshots; ``complete``: these are all the torrents now (the daemon's
        table drops removed ones)."""
        if complete:
            self.statuses = {}
        for s in statuses:
            self.statuses[s.info_hash] = s
            rep = self.reporters.get(s.info_hash)
            if rep is not None:
                rep.update(s)
        if self.mode == "live" and self._live is None:
            self._start_live()

    def close(self, statuses: list[TorrentStatus] | None = None) -> None:
        for s in statuses or []:
            self.statuses[s.info_hash] = s
        if self.mode == "live":
            live, self._live = self._live, None
            if live is not None:
                live.stop()  # type: ignore[attr-defined]
            for s in self.statuses.values():
                self._print(summary_line(s, self.clock()))
            return
        for ih, rep in self.reporters.items():
            rep.close(self.statuses.get(ih))

    # -- the live table -------------------------------------------------------------
    def _print(self, text: str) -> None:
        if self.mode == "quiet":
            return
        self._console().print(text, highlight=False, markup=False, soft_wrap=True)

    def _console(self) -> Console:
        from rich.console import Console

        if self._rich is None:  # rich is only imported for a terminal or the summary
            self._rich = Console(file=self.stream, highlight=False)
        return self._rich

    def _start_live(self) -> None:
        from rich.live import Live
        from rich.text import Text

        console = self._console()

        def renderable() -> Text:
            lines = table_lines(list(self.statuses.values()), console.width)
            text = Text("\n".join(lines[: max(2, console.height - 1)]), no_wrap=True, overflow="ellipsis")
            text.stylize("bold underline", 0, len(lines[0]))
            return text

        live = Live(console=console, auto_refresh=True, refresh_per_second=4, transient=True,
                    get_renderable=renderable)
        live.start()
        self._live = live
