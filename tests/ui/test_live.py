"""The live display: render fixed snapshots into a recording console and read the text."""

from __future__ import annotations

import io
import time

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from ui_snapshots import NOW, FakeClock, peer, status, tracker

from swarm.status import TorrentStatus
from swarm.ui import events, make_reporter
from swarm.ui.live import LiveReporter, render

MiB = 1024 * 1024


def text_of(s: TorrentStatus, width: int = 100, height: int = 40, **kw: object) -> str:
    console = Console(record=True, width=width, height=height, file=io.StringIO(), color_system=None)
    console.print(render(s, width, height, now=NOW, **kw))  # type: ignore[arg-type]
    return console.export_text()


def test_header_rates_eta_and_totals() -> None:
    out = text_of(status(dht_nodes=120))
    lines = out.splitlines()
    assert lines[0].startswith("debian.iso  downloading  0123456789ab")
    assert lines[1].endswith(" 45.4%") and lines[1].startswith("━")
    assert "120.3 MiB / 265.0 MiB" in out
    assert "↓ 50.1 MiB/s" in out and "↑ 2.0 MiB/s" in out
    assert "eta 3s" in out and "peers 4 (1 seed)" in out
    assert "downloaded 121.0 MiB  uploaded 2.0 MiB  ratio 0.02  elapsed 10s  dht 120 nodes" in out


def test_no_dht_line_when_unknown() -> None:
    assert "dht" not in text_of(status(dht_nodes=None))


def test_peers_sorted_by_total_rate() -> None:
    peers = (peer(1, 1 * MiB), peer(2, 0, 30 * MiB), peer(3, 5 * MiB, 1 * MiB), peer(4, 0))
    out = text_of(status(peers=peers))
    rows = [line for line in out.splitlines() if line.startswith("127.0.0.")]
    assert [r.split(":")[0] for r in rows] == ["127.0.0.2", "127.0.0.3", "127.0.0.1", "127.0.0.4"]
    assert "30.0 MiB/s" in rows[0] and "libtorrent 2.1.1" in rows[0]
    assert "address" in out and "flags" in out


def test_peers_table_says_how_each_connection_is_encrypted() -> None:
    peers = (peer(1, 3 * MiB, encryption="encrypted"), peer(2, 2 * MiB, encryption="obfuscated"), peer(3, MiB))
    rows = [line for line in text_of(status(peers=peers)).splitlines() if line.startswith("127.0.0.")]
    assert [r.split()[-6] for r in rows] == ["RC4", "obfs", "plain"]  # before down, up (2 words each), have


def test_peers_capped_to_terminal_height() -> None:
    peers = tuple(peer(i, float(i)) for i in range(1, 51))
    out = text_of(status(peers=peers), height=20)
    lines = out.splitlines()
    assert len(lines) <= 19  # the last terminal line stays free for the cursor
    rows = [line for line in lines if line.startswith("127.0.0.")]
    assert rows[0].startswith("127.0.0.50:") and len(rows) >= 5
    assert f"… and {50 - len(rows)} more peers" in out


def test_piece_map_of_a_known_bitfield() -> None:
    # 92 cells = 100 columns minus the 8-column label: drawn one to one.
    pm = "#" * 46 + "+" * 6 + "." * 30 + " " * 10
    out = text_of(status(piece_map=pm))
    (line,) = [ln for ln in out.splitlines() if ln.startswith("pieces")]
    assert line.rstrip() == "pieces  " + "█" * 46 + "▒" * 6 + "·" * 30


def test_piece_map_is_rescaled_to_the_width() -> None:
    pm = "#" * 500 + "." * 500  # 1000 pieces into 52 cells
    out = text_of(status(piece_map=pm), width=60)
    (line,) = [ln for ln in out.splitlines() if ln.startswith("pieces")]
    cells = line[8:]
    assert len(cells) == 52 and set(cells) <= {"█", "▓", "·"}
    assert cells.startswith("█" * 25) and cells.endswith("·" * 25)


def test_availability_line() -> None:
    out = text_of(status(availability=(0, 1, 2, 12) * 23))
    (line,) = [ln for ln in out.splitlines() if ln.startswith("avail")]
    assert line == "avail   " + "012+" * 23


def test_tracker_lines_and_error() -> None:
    trs = (
        tracker(seeders=3),
        tracker("udp://127.0.0.1:1/announce", state="error", last_error="connection refused", last_announce=None),
    )
    out = text_of(status(trackers=trs))
    assert "tracker http://127.0.0.1:6969/announce  ok 12 peers (3 seeds), last 5s ago, next in 29m55s" in out
    assert "tracker udp://127.0.0.1:1/announce  error: connection refused, last never" in out


def test_many_trackers_are_summarised() -> None:
    trs = tuple(tracker(f"http://127.0.0.{i}/announce") for i in range(10))
    out = text_of(status(trackers=trs))
    assert out.count("tracker http://") == 2 and "… and 8 more trackers" in out


def test_stalled_reason_and_error_shown() -> None:
    out = text_of(status(stalled_reason="no connected peer has piece 12", error="disk full"))
    assert "stalled: no connected peer has piece 12" in out
    assert "error: disk full" in out


def test_error_is_red() -> None:
    console = Console(record=True, width=100, height=40, file=io.StringIO(), force_terminal=True, color_system="truecolor")
    console.print(render(status(error="disk full"), 100, 40, now=NOW))
    html = console.export_html(inline_styles=True)
    assert "error: disk full" in html and "color: #800000" in html  # rich's "red"


def test_event_log_shown_and_shrinks_first() -> None:
    log = [(NOW, events.PEER, f"peer 10.0.0.{i}:1 connected") for i in range(4)]
    out = text_of(status(), log=log)
    assert "peer 10.0.0.3:1 connected" in out and "peer 10.0.0.0:1 connected" in out
    peers = tuple(peer(i, float(i)) for i in range(1, 51))
    small = text_of(status(peers=peers), height=14, log=log).splitlines()
    assert len(small) <= 13
    assert any(line.startswith("127.0.0.50:") for line in small)  # peers keep priority over the log


def test_tiny_terminal_does_not_crash() -> None:
    out = text_of(status(peers=(peer(1),), piece_map="#." * 100, availability=(1,) * 10), width=20, height=4)
    assert 1 <= len(out.splitlines()) <= 3


snapshots = st.builds(
    status,
    name=st.text(max_size=300),
    state=st.sampled_from(["metadata", "checking", "downloading", "seeding", "stopped", "error", "??"]),
    total_size=st.integers(min_value=0, max_value=2**50),
    verified=st.integers(min_value=-5, max_value=2**50),
    down_rate=st.floats(allow_nan=True, allow_infinity=True),
    eta=st.none() | st.floats(allow_nan=True),
    peers=st.lists(st.builds(peer, st.integers(0, 300), st.floats(0, 1e9), st.floats(0, 1e9)), max_size=60).map(tuple),
    piece_map=st.text(alphabet="#+. ?", max_size=500),
    availability=st.lists(st.integers(0, 1000), max_size=500).map(tuple),
    stalled_reason=st.none() | st.text(max_size=200),
    error=st.none() | st.text(max_size=200),
    dht_nodes=st.none() | st.integers(0, 10**6),
)


@settings(max_examples=60, deadline=None)
@given(snapshots, st.integers(20, 250), st.integers(4, 80))
def test_render_fits_any_terminal(s: TorrentStatus, width: int, height: int) -> None:
    console = Console(record=True, width=width, height=height, file=io.StringIO(), color_system=None)
    console.print(render(s, width, height, now=NOW))
    lines = console.export_text().splitlines()
    assert len(lines) <= height - 1
    assert all(console.measure(line).maximum <= width for line in lines)


def wait_for(cond, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def test_live_reporter_renders_from_its_own_thread(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import swarm.ui.live as live_mod

    calls: list[str] = []
    real_render = live_mod.render

    def counting_render(*a, **kw):  # type: ignore[no-untyped-def]
        import threading

        calls.append(threading.current_thread().name)
        return real_render(*a, **kw)

    monkeypatch.setattr(live_mod, "render", counting_render)
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=100, height=30, color_system=None)
    rep = make_reporter("live", console=console, refresh_per_second=20, clock=FakeClock())
    assert isinstance(rep, LiveReporter)
    rep.start(status())  # rich's Live builds one frame in its constructor: fine, once
    calls.clear()
    for i in range(100):
        rep.update(status(down_rate=float(i)))
    rep.update(status(down_rate=7.5 * MiB))
    assert wait_for(lambda: "7.5 MiB/s" in buf.getvalue()), buf.getvalue()[-2000:]
    assert calls and "MainThread" not in calls  # update() never renders on the caller's thread
    rep.event(events.ERROR, message="disk full")
    rep.close(status(verified=int(265 * MiB)))
    out = buf.getvalue()
    assert "error: disk full" in out
    assert "debian.iso: complete, 265.0 MiB/265.0 MiB" in out.splitlines()[-1]


def test_hostile_text_cannot_drive_the_terminal() -> None:
    evil = "x\x1b[2J\x1b]0;pwned\x07\r\nfake line\u202e"
    s = status(
        name=evil,
        error=evil,
        stalled_reason=evil,
        peers=(peer(1, address=evil, client=evil, flags=evil),),
        trackers=(tracker(evil, state="error", last_error=evil),),
    )
    buf = io.StringIO()
    console = Console(file=buf, width=120, height=40, force_terminal=True, color_system="standard")
    console.print(render(s, 120, 40, now=NOW, log=[(NOW, "error", "error: " + evil.replace("\n", "?"))]))
    raw = buf.getvalue()
    # Only rich's own SGR colour sequences remain; no clear-screen, title or bidi override.
    assert "\x1b[2J" not in raw and "\x1b]0;" not in raw and "\x07" not in raw and "\u202e" not in raw
    assert "\r" not in raw
    assert not any(line.startswith("fake line") for line in raw.splitlines())


def test_display_on_stderr_leaves_stdout_alone(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # `get --stdout`: file bytes on stdout, display on stderr; rich must not hijack stdout.
    import sys

    fake_out, fake_err = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stdout", fake_out)
    monkeypatch.setattr(sys, "stderr", fake_err)
    console = Console(file=sys.stderr, force_terminal=True, width=80, height=20, color_system=None)
    rep = LiveReporter(console=console, refresh_per_second=20)
    rep.start(status())
    assert sys.stdout is fake_out
    print("file data", end="")
    rep.close(status())
    assert fake_out.getvalue() == "file data"
    assert "debian.iso" in fake_err.getvalue()


def test_log_records_go_above_the_display(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import logging
    import sys

    fake_err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", fake_err)
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        console = Console(file=sys.stderr, force_terminal=True, width=80, height=20, color_system=None)
        rep = LiveReporter(console=console, refresh_per_second=20)
        rep.start(status())
        assert handler.stream is not fake_err  # rerouted through rich's proxy
        logging.getLogger("swarm.test").warning("tracker slow")
        rep.close(status())
        assert handler.stream is fake_err  # restored
        assert "tracker slow" in fake_err.getvalue()
    finally:
        root.removeHandler(handler)


def test_peer_flags_come_from_the_booleans_not_the_engine_string() -> None:
    p = peer(1, 5 * MiB, am_interested=True, peer_choking=False, peer_interested=True, am_choking=False,
             source="dht", flags="dI uC")
    (row,) = [ln for ln in text_of(status(peers=(p,))).splitlines() if ln.startswith("127.0.0.1:")]
    assert row.split()[3] == "DUH"


def test_live_event_routing() -> None:
    buf = io.StringIO()
    console = Console(file=buf, width=100, height=30, color_system=None)  # not a terminal: no live frames
    rep = LiveReporter(console=console, clock=FakeClock())
    rep.event(events.PIECE, action="verified", index=1)
    assert rep.log == ()
    rep.event(events.PEER, action="connected", address="127.0.0.1:1")
    rep.event(events.DONE, name="x", total_size=1, downloaded=1, uploaded=0, elapsed=1.0)
    assert [k for _, k, _ in rep.log] == ["peer"]  # done goes to the scrollback instead
    assert "done: x" in buf.getvalue()
    for i in range(10):
        rep.event(events.PEER, action="disconnected", address=f"127.0.0.1:{i}")
    assert len(rep.log) == LiveReporter.LOG_LINES and rep.log[-1][2].startswith("peer 127.0.0.1:9 ")


def test_metadata_state_shows_no_progress() -> None:
    out = text_of(status(state="metadata", total_size=0, verified=0, num_pieces=0, peers=()))
    bar = out.splitlines()[1]
    assert bar.endswith(" fetching metadata") and "100.0%" not in out


def test_a_render_bug_shows_instead_of_killing_the_display(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import swarm.ui.live as live_mod

    def broken(*a, **kw):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("oops")

    monkeypatch.setattr(live_mod, "render", broken)
    rep = LiveReporter(console=Console(file=io.StringIO(), width=80, height=20), clock=FakeClock())
    rep.update(status())
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(rep.renderable())
    assert "(display error: oops)" in console.export_text()
