"""What a person and a script see: live display, plain lines, ``--json`` events.

The engine drives one ``Reporter`` from ``swarm.status`` snapshots::

    mode = choose_mode(args.json, args.quiet, sys.stdout.isatty())
    rep = make_reporter(mode)
    rep.start(status, magnet=..., torrent=..., path=...)
    rep.update(status)                      # a few times a second; cheap
    rep.event(events.PEER, action="connected", address="1.2.3.4:6881", client="...")
    rep.close(final_status)                 # summary line / summary event
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, TextIO

from . import events
from .reporter import Clock, QuietReporter, Reporter

if TYPE_CHECKING:
    from rich.console import Console

MODES = ("live", "plain", "json", "quiet")

__all__ = ["MODES", "Reporter", "choose_mode", "events", "make_reporter"]


def choose_mode(json: bool, quiet: bool, isatty: bool) -> str:
    """``--json`` wins (a script asked for it), then ``-q``, then terminal or not.

    A terminal with TERM=dumb gets plain lines: it cannot move the cursor.
    """
    if json:
        return "json"
    if quiet:
        return "quiet"
    if isatty and os.environ.get("TERM", "") != "dumb":
        return "live"
    return "plain"


def make_reporter(
    mode: str,
    *,
    stream: TextIO | None = None,
    console: Console | None = None,
    refresh_per_second: float = 4,
    clock: Clock = time.time,
    err_stream: TextIO | None = None,
    interval: float | None = None,
) -> Reporter:
    """A reporter for ``mode`` writing to ``stream`` (stdout by default; stderr with ``--stdout``).

    ``interval`` is the seconds between progress lines (plain, default 5) or
    progress objects (json, default 1).
    """
    if mode == "live":
        from .live import LiveReporter  # rich is only imported for a terminal

        return LiveReporter(
            console=console, stream=stream, refresh_per_second=refresh_per_second, clock=clock
        )
    if mode == "plain":
        from .plain import PlainReporter

        return PlainReporter(
            stream=stream, err_stream=err_stream, clock=clock, interval=5.0 if interval is None else interval
        )
    if mode == "json":
        from .jsonl import JsonReporter

        return JsonReporter(stream=stream, clock=clock, interval=1.0 if interval is None else interval)
    if mode == "quiet":
        return QuietReporter(err_stream=err_stream, clock=clock)
    raise ValueError(f"unknown reporter mode {mode!r}; expected one of {MODES}")
