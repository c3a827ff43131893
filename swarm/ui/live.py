"""The rich live display for a terminal.

``render(status, width, height)`` is a pure function of one snapshot, so
tests render fixed snapshots into a recording console. ``LiveReporter.update``
only stores the snapshot (one attribute assignment); rich's refresh thread
calls ``render`` 4 times a second. Rendering builds plain ``Text`` lines
rather than ``Table``s: it is several times cheaper, keeps the line count
exact (the peers table is capped to the terminal height), and the thread
holds the GIL for well under a millisecond per frame (see
benchmarks/bench_display.py).
"""

from __future__ import annotations

import atexit
import logging
import sys
import time
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from swarm.status import PeerStatus, TorrentStatus, WebSeedStatus

from . import events as ev
from .format import (
    FLIGHT,
    HAVE,
    MISSING,
    PARTIAL,
    UNWANTED,
    availability_text,
    clip,
    clock_text,
    event_text,
    fraction_done,
    human_duration,
    human_eta,
    human_rate,
    human_size,
    peer_flags,
    percent,
    rescale_availability,
    rescale_piece_map,
    safe,
    share_ratio,
    sort_peers,
    summary_line,
    tracker_state,
)
from .reporter import Clock, Reporter

STATE_STYLE = {
    "downloading": "bold cyan",
    "seeding": "bold green",
    "metadata": "bold yellow",
    "checking": "bold yellow",
    "stopped": "bold",
    "error": "bold red",
}

#: Piece-map glyphs and styles per rescaled cell.
MAP_GLYPH = {HAVE: "█", PARTIAL: "▓", FLIGHT: "▒", MISSING: "·", UNWANTED: " "}
MAP_STYLE = {HAVE: "green", PARTIAL: "green", FLIGHT: "yellow", MISSING: "grey50", UNWANTED: ""}

#: A log entry shown under the peers: (time, kind, text).
LogEntry = tuple[float, str, str]

#: Events printed above the live area (kept in the scrollback) instead of its short log.
PERSISTENT = frozenset({ev.ERROR, ev.DONE, ev.METADATA, ev.LISTENING})

MAX_TRACKER_LINES = 3
LABEL = 8  # width of the "pieces  " / "avail   " labels


def _bar(fraction: float, width: int) -> Text:
    width = max(1, width)
    f = min(1.0, max(0.0, fraction if fraction == fraction else 0.0))
    filled = int(f * width)
    t = Text("━" * filled, style="bright_green" if f >= 1.0 else "cyan")
    t.append("━" * (width - filled), style="grey23")
    return t


def _piece_map_line(piece_map: str, width: int) -> Text:
    cells = rescale_piece_map(piece_map, width)
    t = Text("pieces  ", style="bold")
    # Append runs, not single cells: a few spans per line instead of hundreds.
    i = 0
    while i < len(cells):
        c = cells[i]
        j = i
        while j < len(cells) and cells[j] == c:
            j += 1
        t.append(MAP_GLYPH.get(c, "·") * (j - i), style=MAP_STYLE.get(c, ""))
        i = j
    return t


def _availability_line(avail: tuple[int, ...], width: int) -> Text:
    digits = availability_text(rescale_availability(avail, width))
    t = Text("avail   ", style="bold")
    i = 0
    while i < len(digits):
        zero = digits[i] == "0"
        j = i
        while j < len(digits) and (digits[j] == "0") == zero:
            j += 1
        t.append(digits[i:j], style="red" if zero else "blue")
        i = j
    return t


#: The peers table's "enc" column: RC4, MSE handshake only (obfuscated), plain.
_ENCRYPTION = {"encrypted": "RC4", "obfuscated": "obfs", "plain": "plain"}


def _peer_columns(width: int) -> tuple[int, int]:
    """Address and client column widths for a given terminal width."""
    fixed = 6 + 5 + 11 + 11 + 6 + 6  # flags, enc, down, up, have, separating spaces
    room = max(16, width - fixed)
    addr = min(22, max(9, room * 11 // 20))
    client = max(6, min(20, room - addr))
    return addr, client


def _peer_header(addr_w: int, client_w: int) -> Text:
    return Text(
        f"{'address':<{addr_w}} {'client':<{client_w}} {'flags':<6} {'enc':<5} {'down':>11} {'up':>11} {'have':>6}",
        style="bold underline",
    )


def _peer_row(p: PeerStatus, addr_w: int, client_w: int) -> Text:
    # Always from the booleans, so every engine shows the same familiar letters.
    flags = peer_flags(p)
    return Text(
        f"{clip(safe(p.address), addr_w):<{addr_w}} {clip(safe(p.client), client_w):<{client_w}} "
        f"{clip(flags, 6):<6} {_ENCRYPTION.get(p.encryption, '?'):<5} {human_rate(p.down_rate):>11} {human_rate(p.up_rate):>11} "
        f"{percent(p.progress):>6}"
    )


def _web_seed_line(w: WebSeedStatus, width: int) -> Text:
    """A BEP 19 web seed: URL, state, rate and bytes from it."""
    line = Text("web seed ", style="bold")
    tail = f"  {w.state}  ↓ {human_rate(w.down_rate)}  {human_size(w.downloaded)}"
    line.append(clip(safe(w.url), max(10, width - 9 - len(tail))))
    line.append(tail, style="red" if w.state == "dropped" else ("cyan" if w.state == "fetching" else ""))
    return line


def render(
    status: TorrentStatus,
    width: int,
    height: int,
    *,
    now: float | None = None,
    log: Sequence[LogEntry] = (),
) -> RenderableType:
    """The whole display for one snapshot, at most ``height - 1`` lines of ``width`` cells."""
    now = time.time() if now is None else now
    width = max(20, width)
    height = max(4, height)
    s = status
    lines: list[Text] = []

    head = Text(clip(safe(s.name), max(8, width - 30)), style="bold")
    head.append("  ")
    head.append(safe(s.state), style=STATE_STYLE.get(s.state, "bold"))
    head.append(f"  {safe(s.info_hash[:12])}", style="grey50")
    lines.append(head)

    done = fraction_done(s)
    pct = percent(done) if s.state != "metadata" else "fetching metadata"
    bar = _bar(done, width - len(pct) - 1)
    bar.append(" " + pct, style="bold")
    lines.append(bar)

    stats = Text(f"{human_size(s.verified)} / {human_size(s.total_size)}")
    stats.append("   ↓ ", style="bold")
    stats.append(human_rate(s.down_rate), style="cyan")
    stats.append("  ↑ ", style="bold")
    stats.append(human_rate(s.up_rate), style="magenta")
    stats.append(f"   eta {human_eta(s)}")
    stats.append(f"   peers {len(s.peers)} ({s.seeds} seed{'' if s.seeds == 1 else 's'})")
    lines.append(stats)

    totals = Text(
        f"downloaded {human_size(s.downloaded)}  uploaded {human_size(s.uploaded)}  "
        f"ratio {share_ratio(s):.2f}"
    )
    if s.started_at:
        totals.append(f"  elapsed {human_duration(now - s.started_at)}")
    if s.dht_nodes is not None:
        totals.append(f"  dht {s.dht_nodes} nodes")
    lines.append(totals)

    if s.error:
        lines.append(Text(f"error: {safe(s.error)}", style="bold red"))
    if s.stalled_reason:
        lines.append(Text(f"stalled: {safe(s.stalled_reason)}", style="yellow"))

    map_w = width - LABEL
    if s.piece_map and map_w > 0:
        lines.append(_piece_map_line(s.piece_map, map_w))
    if s.availability and map_w > 0:
        lines.append(_availability_line(s.availability, map_w))

    trackers = s.trackers
    shown = trackers if len(trackers) <= MAX_TRACKER_LINES else trackers[: MAX_TRACKER_LINES - 1]
    for t in shown:
        line = Text("tracker ", style="bold")
        state = tracker_state(t, now)
        url_w = max(10, min(len(t.url), width - 8 - len(state) - 2))
        line.append(clip(safe(t.url), url_w) + "  ")
        line.append(state, style="red" if t.state == "error" else ("green" if t.state == "ok" else ""))
        lines.append(line)
    if len(shown) < len(trackers):
        lines.append(Text(f"… and {len(trackers) - len(shown)} more trackers", style="grey50"))
    for w in s.web_seeds[:MAX_TRACKER_LINES]:
        lines.append(_web_seed_line(w, width))

    log_lines: list[Text] = []
    for when, kind, text in log:
        style = "red" if kind == ev.ERROR else ("yellow" if kind in (ev.STALLED,) else "grey62")
        first = safe(text.split("\n", 1)[0] if text else kind)
        log_lines.append(Text(f"[{clock_text(when)}] {first}", style=style))

    # The peers table gets whatever height is left; the log shrinks first if needed.
    budget = height - 1 - len(lines)
    if log_lines and budget - len(log_lines) < 3:
        log_lines = log_lines[-max(0, budget - 3) :] if budget > 3 else []
    room = budget - len(log_lines)
    if s.peers and room >= 2:
        addr_w, client_w = _peer_columns(width)
        peers = sort_peers(s.peers)
        rows = room - 1  # the header row
        if len(peers) > rows:
            rows -= 1  # keep a line for "… and N more"
        lines.append(_peer_header(addr_w, client_w))
        for p in peers[: max(0, rows)]:
            lines.append(_peer_row(p, addr_w, client_w))
        if len(peers) > max(0, rows):
            lines.append(Text(f"… and {len(peers) - max(0, rows)} more peers", style="grey50"))
    elif s.peers and room == 1:
        lines.append(Text(f"{len(s.peers)} peers (enlarge the terminal to list them)", style="grey50"))
    lines.extend(log_lines)
    for line in lines:
        line.no_wrap = True
        line.overflow = "ellipsis"
    return Group(*lines[: max(1, height - 1)])


def _console_handlers() -> list[logging.StreamHandler]:  # type: ignore[type-arg]
    """Log handlers writing to the real stdout/stderr, which would tear the live display."""
    out = []
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler and h.stream in (
            sys.stderr,
            sys.stdout,
            sys.__stderr__,
            sys.__stdout__,
        ):
            out.append(h)
    return out


class LiveReporter(Reporter):
    """A rich ``Live`` display redrawn by rich's own thread; ``update`` only stores the snapshot."""

    mode = "live"
    LOG_LINES = 4

    def __init__(
        self,
        *,
        console: Console | None = None,
        stream: TextIO | None = None,
        refresh_per_second: float = 4,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self.console = console if console is not None else Console(file=stream, highlight=False)
        self.refresh_per_second = refresh_per_second
        self.log: tuple[LogEntry, ...] = ()
        self._live: Live | None = None
        self._handlers: list[tuple[logging.StreamHandler, object]] = []  # type: ignore[type-arg]

    def renderable(self) -> RenderableType:
        s = self.status
        if s is None:
            return Text("starting…")
        try:
            return render(s, self.console.width, self.console.height, now=self.clock(), log=self.log)
        except Exception as exc:  # a display bug must not kill rich's refresh thread
            logging.getLogger(__name__).debug("render failed", exc_info=True)
            return Text(f"(display error: {safe(exc)})", style="red")

    def start(self, status: TorrentStatus, **fields: object) -> None:
        super().start(status)
        text = event_text(
            ev.ADDED, {"name": status.name, "info_hash": status.info_hash, **fields}
        )
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)
        if self._live is None:
            # Stray prints and log lines are routed above the display, but only
            # for the stream the display owns: with `get --stdout` the display
            # is on stderr and stdout carries file data that must stay untouched.
            on_stdout = self.console.file is sys.stdout
            self._live = Live(
                console=self.console,
                auto_refresh=True,
                refresh_per_second=self.refresh_per_second,
                transient=True,
                get_renderable=self.renderable,
                redirect_stdout=on_stdout,
                redirect_stderr=on_stdout or self.console.file is sys.stderr,
            )
            before = sys.stderr
            handlers = _console_handlers()
            self._live.start()
            # An exit that skips close() must still give the cursor back.
            atexit.register(self._stop_live)
            if sys.stderr is not before:  # rich installed its proxy: send log records through it
                for h in handlers:
                    self._handlers.append((h, h.stream))
                    h.setStream(sys.stderr)

    def update(self, status: TorrentStatus) -> None:
        # A single reference assignment: atomic, so the refresh thread sees whole snapshots.
        self.status = status

    def event(self, kind: str, **fields: object) -> None:
        if kind == ev.PIECE and fields.get("action") == "verified":
            return  # the piece map and the bar show those
        self.fill(kind, fields)
        text = event_text(kind, fields)
        if kind in PERSISTENT:
            # Worth keeping in the scrollback: printed above the live area, not in its log.
            style = "bold red" if kind == ev.ERROR else None
            self.console.print(
                f"[{clock_text(self.clock())}] {text}", style=style, highlight=False, markup=False
            )
        else:
            self.log = (*self.log[-(self.LOG_LINES - 1) :], (self.clock(), kind, text))

    def _stop_live(self) -> None:
        live, self._live = self._live, None
        if live is not None:
            atexit.unregister(self._stop_live)
            live.stop()
        for h, stream in self._handlers:
            h.setStream(stream)
        self._handlers = []

    def close(self, status: TorrentStatus | None = None) -> None:
        super().close(status)
        self._stop_live()
        if self.status is not None:
            self.console.print(
                summary_line(self.status, self.clock()), highlight=False, markup=False, soft_wrap=True
            )
