"""Plain mode: timestamped lines, a progress line every few seconds on a fake clock."""

from __future__ import annotations

import io
import re

from ui_snapshots import HASH, NOW, FakeClock, status

from swarm.ui import choose_mode, events, make_reporter
from swarm.ui.format import clock_text
from swarm.ui.plain import PlainReporter
from swarm.ui.reporter import QuietReporter

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def make() -> tuple[PlainReporter, io.StringIO, io.StringIO, FakeClock]:
    out, err, clock = io.StringIO(), io.StringIO(), FakeClock()
    rep = make_reporter("plain", stream=out, err_stream=err, clock=clock)
    assert isinstance(rep, PlainReporter)
    return rep, out, err, clock


def test_progress_line_every_five_seconds() -> None:
    rep, out, _, clock = make()
    rep.start(status())
    for _ in range(19):  # 4 Hz for 4.75 s
        clock.advance(0.25)
        rep.update(status())
    assert len(out.getvalue().splitlines()) == 1  # only "added"
    clock.advance(0.25)
    rep.update(status())
    lines = out.getvalue().splitlines()
    assert lines[-1] == (
        f"[{clock_text(clock())}] 45.4% 120.3 MiB/265.0 MiB down 50.1 MiB/s up 2.0 MiB/s "
        "peers 4 (1 seed) eta 3s"
    )
    for _ in range(20):
        clock.advance(0.25)
        rep.update(status())
    assert len(out.getvalue().splitlines()) == 3


def test_state_change_is_logged_at_once() -> None:
    rep, out, _, clock = make()
    rep.start(status(state="metadata"))
    clock.advance(0.1)
    rep.update(status(state="downloading"))
    assert out.getvalue().splitlines()[-1].endswith("eta 3s")
    assert len(out.getvalue().splitlines()) == 2


def test_events_are_one_line_each_and_errors_reach_stderr() -> None:
    rep, out, err, _ = make()
    rep.start(status(), magnet="magnet:?xt=urn:btih:" + HASH)
    rep.event(events.PEER, action="connected", address="127.0.0.1:6882", client="libtorrent 2.1.1")
    rep.event(events.TRACKER, action="ok", url="http://127.0.0.1:6969/announce", peers=3)
    rep.event(events.PIECE, action="failed", index=4)
    rep.event(events.ERROR, message="tracker unreachable")
    rep.event(events.DONE)
    text = out.getvalue()
    assert f"added debian.iso, 265.0 MiB in 1060 pieces of 256.0 KiB, info-hash {HASH}" in text
    assert "  magnet: magnet:?xt=urn:btih:" in text
    assert "peer 127.0.0.1:6882 connected (libtorrent 2.1.1)" in text
    assert "tracker http://127.0.0.1:6969/announce: ok, 3 peers" in text
    assert "piece 4 failed the hash check" in text
    assert "error: tracker unreachable" in text
    assert "done: debian.iso, 265.0 MiB in 10s" in text
    stamped = [line for line in text.splitlines() if not line.startswith("  ")]
    assert all(STAMP.match(line) for line in stamped)
    assert err.getvalue() == "swarm: error: tracker unreachable\n"


def test_close_prints_a_summary() -> None:
    rep, out, _, _ = make()
    rep.start(status())
    rep.close(status(verified=int(265 * 1024 * 1024)))
    assert "debian.iso: complete, 265.0 MiB/265.0 MiB" in out.getvalue().splitlines()[-1]


def test_quiet_prints_only_errors() -> None:
    err = io.StringIO()
    rep = make_reporter("quiet", err_stream=err, clock=FakeClock())
    assert isinstance(rep, QuietReporter)
    rep.start(status())
    rep.update(status())
    rep.event(events.PEER, action="connected", address="a:1")
    rep.event(events.ERROR, message="boom")
    rep.close(status())
    assert err.getvalue() == "swarm: error: boom\n"


def test_choose_mode(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TERM", "xterm-256color")
    assert choose_mode(json=True, quiet=True, isatty=True) == "json"
    assert choose_mode(json=False, quiet=True, isatty=True) == "quiet"
    assert choose_mode(json=False, quiet=False, isatty=True) == "live"
    assert choose_mode(json=False, quiet=False, isatty=False) == "plain"
    monkeypatch.setenv("TERM", "dumb")
    assert choose_mode(json=False, quiet=False, isatty=True) == "plain"


def test_unknown_mode_is_refused() -> None:
    try:
        make_reporter("fancy")
    except ValueError as exc:
        assert "fancy" in str(exc)
    else:
        raise AssertionError("make_reporter accepted an unknown mode")


def test_hostile_names_cannot_forge_log_lines() -> None:
    rep, out, _, _ = make()
    rep.start(status(name="a\n[12:00:00] done: forged\x1b[2J"))
    rep.event(events.PEER, action="banned", address="1.2.3.4:5", reason="bad\r\nline")
    rep.event(events.ERROR, message="x\ny")
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert len(text.splitlines()) == 3
    assert all(STAMP.match(line) for line in text.splitlines())


def test_verified_pieces_are_not_logged_but_failures_are() -> None:
    rep, out, _, _ = make()
    for i in range(100):
        rep.event(events.PIECE, action="verified", index=i)
    assert out.getvalue() == ""
    rep.event(events.PIECE, action="failed", index=3)
    assert "piece 3 failed" in out.getvalue()


def test_an_idle_seed_repeats_its_line_once_a_minute() -> None:
    rep, out, _, clock = make()
    seeding = status(state="seeding", verified=int(265 * 1024 * 1024), down_rate=0.0, up_rate=0.0, eta=None)
    rep.start(seeding)
    for _ in range(4 * 130):  # 130 s at 4 Hz
        clock.advance(0.25)
        rep.update(seeding)
    progress = [ln for ln in out.getvalue().splitlines() if "100.0%" in ln]
    assert len(progress) == 3  # at 5, 65 and 125 s, not 26 lines
    rep.update(status(state="seeding", verified=int(265 * 1024 * 1024), up_rate=1024.0, eta=None))
    clock.advance(5)
    rep.update(status(state="seeding", verified=int(265 * 1024 * 1024), up_rate=1024.0, eta=None))
    assert "up 1.0 KiB/s" in out.getvalue().splitlines()[-1]  # a change shows at the normal pace


def test_a_lasting_stall_becomes_one_event() -> None:
    rep, out, _, clock = make()
    rep.start(status())
    for _ in range(4 * 30):
        clock.advance(0.25)
        rep.update(status(stalled_reason="no peers"))
    stalls = [ln for ln in out.getvalue().splitlines() if "] stalled: no peers" in ln]
    assert len(stalls) == 1
    assert stalls[0] == f"[{clock_text(NOW + 10)}] stalled: no peers"
    for _ in range(4 * 30):  # a new reason is a new stall
        clock.advance(0.25)
        rep.update(status(stalled_reason="all peers choke us"))
    assert sum("] stalled: all peers choke us" in ln for ln in out.getvalue().splitlines()) == 1


def test_a_short_stall_is_not_an_event() -> None:
    rep, out, _, clock = make()
    rep.start(status())
    for i in range(4 * 60):
        clock.advance(0.25)
        rep.update(status(stalled_reason="connecting" if i % 20 < 10 else None))
    assert "] stalled:" not in out.getvalue()
