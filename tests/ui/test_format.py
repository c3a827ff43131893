"""Pure formatting helpers: exact strings, and properties over hostile values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ui_snapshots import NOW, peer, status, tracker

from swarm.ui.format import (
    availability_text,
    clip,
    event_text,
    fraction_done,
    human_duration,
    human_rate,
    human_size,
    peer_flags,
    percent,
    progress_line,
    rescale_availability,
    rescale_piece_map,
    share_ratio,
    sort_peers,
    summary_line,
    tracker_line,
    tracker_state,
)

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (1024 * 1024 - 1, "1.0 MiB"),  # not "1024.0 KiB"
        (120.3 * MiB, "120.3 MiB"),
        (5 * 1024**4, "5.0 TiB"),
        (-2048, "-2.0 KiB"),
        (math.nan, "0 B"),
        (math.inf, "0 B"),
    ],
)
def test_human_size(n: float, text: str) -> None:
    assert human_size(n) == text


def test_human_rate() -> None:
    assert human_rate(50.1 * MiB) == "50.1 MiB/s"
    assert human_rate(0) == "0 B/s"


@pytest.mark.parametrize(
    ("s", "text"),
    [
        (None, "-"),
        (math.inf, "-"),
        (math.nan, "-"),
        (-5, "0s"),
        (3.2, "3s"),
        (59.6, "1m00s"),
        (65, "1m05s"),
        (7380, "2h03m"),
        (3 * 86400 + 4 * 3600, "3d04h"),
        (10**9, ">999d"),
    ],
)
def test_human_duration(s: float | None, text: str) -> None:
    assert human_duration(s) == text


@pytest.mark.parametrize(
    ("f", "text"),
    [(0.0, "0.0%"), (0.4523, "45.2%"), (0.99999, "99.9%"), (1.0, "100.0%"), (2.0, "100.0%"), (math.nan, "0.0%")],
)
def test_percent(f: float, text: str) -> None:
    assert percent(f) == text


@pytest.mark.parametrize(
    ("src", "width", "out"),
    [
        ("#+. ", 4, "#+. "),
        ("####....", 2, "#."),
        ("##..", 1, "~"),
        ("#+..", 1, "+"),
        ("#.", 4, "##.."),
        ("  ##", 2, " #"),
        ("# # ", 2, "##"),  # everything wanted is had
        ("#?x.", 4, "#..."),  # unknown characters count as missing
        ("", 10, ""),
        ("###", 0, ""),
    ],
)
def test_rescale_piece_map(src: str, width: int, out: str) -> None:
    assert rescale_piece_map(src, width) == out


@given(st.text(alphabet="#+. x", max_size=3000), st.integers(min_value=0, max_value=400))
def test_rescale_piece_map_properties(src: str, width: int) -> None:
    out = rescale_piece_map(src, width)
    assert len(out) == (width if src else 0)
    assert set(out) <= set("#+. ~")
    if src and set(src) == {"#"}:
        assert out == "#" * width
    if "+" not in src:
        assert "+" not in out
    if src and len(src) <= width and "+" in src:
        assert "+" in out  # stretching never hides activity


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=2000), st.integers(min_value=0, max_value=300))
def test_rescale_availability_properties(avail: list[int], width: int) -> None:
    out = rescale_availability(tuple(avail), width)
    assert len(out) == (width if avail else 0)
    if avail and width:
        assert min(out) == min(avail)  # the rarest part is never hidden
        assert set(out) <= set(avail)


def test_availability_text() -> None:
    assert availability_text((0, 1, 9, 10, 300, -1)) == "019++0"


@pytest.mark.parametrize(
    ("kw", "flags"),
    [
        (dict(am_interested=True, peer_choking=False), "D"),
        (dict(am_interested=True, peer_choking=True), "d"),
        (dict(am_interested=False, peer_choking=False), "K"),
        (dict(am_interested=False, peer_choking=True), ""),
        (dict(am_interested=False, peer_choking=True, peer_interested=True, am_choking=False), "U"),
        (dict(am_interested=False, peer_choking=True, peer_interested=True, am_choking=True), "u"),
        (dict(am_interested=False, peer_choking=True, peer_interested=False, am_choking=False), "?"),
        (dict(snubbed=True, peer_choking=True), "dS"),
        (dict(outgoing=False, source="incoming"), "DI"),
        (dict(source="dht"), "DH"),
        (dict(source="pex"), "DX"),
        (dict(source="lsd"), "DL"),
        (dict(source="tracker"), "D"),
    ],
)
def test_peer_flags(kw: dict[str, object], flags: str) -> None:
    assert peer_flags(peer(1, **kw)) == flags


def test_sort_peers_by_total_rate_then_address() -> None:
    ps = (peer(1, 1.0, 0.0), peer(2, 0.0, 5.0), peer(3, 3.0, 3.0), peer(4, math.nan, 0.0), peer(5, 1.0, 0.0))
    assert [p.address.split(":")[0][-1] for p in sort_peers(ps)] == ["3", "2", "1", "5", "4"]


def test_clip() -> None:
    assert clip("abcdef", 4) == "abc…"
    assert clip("abc", 4) == "abc"
    assert clip("abc", 0) == ""


def test_progress_line_matches_the_documented_form() -> None:
    assert progress_line(status()) == (
        "45.4% 120.3 MiB/265.0 MiB down 50.1 MiB/s up 2.0 MiB/s peers 4 (1 seed) eta 3s"
    )


def test_progress_line_shows_state_and_stall() -> None:
    line = progress_line(status(state="checking", stalled_reason="no peers", eta=None, seeds=2))
    assert line.startswith("checking 45.4%")
    assert "(2 seeds)" in line and "eta -" in line
    assert line.endswith("stalled: no peers")


def test_progress_line_done_when_seeding() -> None:
    assert progress_line(status(state="seeding", verified=int(265 * MiB))).endswith("eta done")


def test_summary_line() -> None:
    line = summary_line(status(verified=int(265 * MiB)), NOW)
    assert line.startswith("debian.iso: complete, 265.0 MiB/265.0 MiB")
    assert "in 10s (avg 12.1 MiB/s)" in line and "ratio 0.02" in line
    assert "stopped at 45.4%" in summary_line(status(), NOW)


def test_tracker_state() -> None:
    assert tracker_state(tracker(seeders=3), NOW) == "ok 12 peers (3 seeds), last 5s ago, next in 29m55s"
    err = tracker(state="error", last_error="connection refused", last_announce=None, next_announce=None)
    assert tracker_state(err, NOW) == "error: connection refused, last never, next -"


def test_tracker_line() -> None:
    assert tracker_line(1234.56, 3, 120) == "1,234.6 announces/s, 3 swarms, 120 peers"
    assert tracker_line(math.nan, 1, 1) == "0.0 announces/s, 1 swarm, 1 peer"


def test_event_text_examples() -> None:
    assert event_text("peer", {"action": "connected", "address": "1.2.3.4:5", "client": "lt"}) == (
        "peer 1.2.3.4:5 connected (lt)"
    )
    connected = {"action": "connected", "address": "1.2.3.4:5", "client": "lt", "source": "pex", "encryption": "encrypted"}
    assert event_text("peer", connected) == "peer 1.2.3.4:5 connected (lt, pex, encrypted)"
    assert event_text("peer", {"action": "banned", "address": "1.2.3.4:5", "reason": "3 bad pieces"}) == (
        "peer 1.2.3.4:5 banned: 3 bad pieces"
    )
    assert event_text("tracker", {"action": "error", "url": "http://t/a", "error": "refused"}) == (
        "tracker http://t/a: error: refused"
    )
    assert event_text("piece", {"action": "failed", "index": 7, "peer": "1.2.3.4:5"}) == (
        "piece 7 failed the hash check (data from 1.2.3.4:5)"
    )
    assert event_text("stalled", {"reason": "no seeds"}) == "stalled: no seeds"
    assert event_text("listening", {"host": "127.0.0.1", "port": 6881}) == "listening on 127.0.0.1:6881"
    assert event_text("whatever", {"a": 1}) == "whatever a=1"


json_values = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.lists(st.integers(), max_size=3)
)


@given(
    st.sampled_from(["added", "listening", "metadata", "peer", "tracker", "piece", "stalled", "done", "error", "x"]),
    st.dictionaries(
        st.sampled_from(["action", "address", "url", "index", "name", "total_size", "elapsed", "peer", "reason", "error"]),
        json_values,
        max_size=6,
    ),
)
def test_event_text_never_raises(kind: str, fields: dict[str, object]) -> None:
    assert isinstance(event_text(kind, fields), str)


def test_no_full_bar_before_metadata() -> None:
    s = status(state="metadata", total_size=0, verified=0, num_pieces=0)
    assert s.progress == 1.0  # the snapshot's own property...
    assert fraction_done(s) == 0.0  # ...is not what a person should see
    assert progress_line(s).startswith("metadata 0.0% 0 B/0 B")
    assert fraction_done(status(total_size=0, verified=0)) == 1.0  # an empty selection is done


def test_share_ratio_for_a_seed() -> None:
    assert share_ratio(status(downloaded=0, uploaded=int(530 * MiB))) == 2.0
    assert share_ratio(status(downloaded=4, uploaded=2)) == 0.5
    assert share_ratio(status(downloaded=0, uploaded=5, total_size=0)) == 0.0
