"""The stall diagnosis names the most specific reason, and stays quiet while things move."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from swarm.core.stall import StallFacts, TrackerFact, diagnose

T0 = 1000.0
LATE = T0 + 60


def facts(**kw: object) -> StallFacts:
    base: dict[str, object] = {"state": "downloading", "last_progress": T0, "after": 15.0}
    base.update(kw)
    return StallFacts(**base)  # type: ignore[arg-type]


def test_quiet_before_the_threshold_and_when_not_downloading() -> None:
    assert diagnose(facts(), T0 + 14.9) is None
    assert diagnose(facts(state="seeding"), LATE) is None
    assert diagnose(facts(state="checking"), LATE) is None
    assert diagnose(facts(), T0 + 15) is not None


def test_every_tracker_failing_names_each_error() -> None:
    f = facts(
        trackers=(
            TrackerFact("http://a/announce", True, "connection refused"),
            TrackerFact("udp://b:1", True, "timeout"),
        ),
        dht_enabled=True,
        dht_nodes=0,
    )
    r = diagnose(f, LATE)
    assert r is not None
    assert r.startswith("all 2 trackers are failing")
    assert "http://a/announce: connection refused" in r and "udp://b:1: timeout" in r
    assert "no DHT nodes" in r and r.endswith("no peers known")


def test_some_trackers_failing() -> None:
    f = facts(trackers=(TrackerFact("http://a", True, "x"), TrackerFact("http://b", False)))
    assert diagnose(f, LATE) == "1 of 2 trackers failing (http://a: x); no peers known"


def test_working_trackers_are_not_blamed() -> None:
    f = facts(trackers=(TrackerFact("http://a", False), TrackerFact("http://b", False)))
    assert diagnose(f, LATE) == "no peers known"


def test_unknown_dht_count_is_not_blamed() -> None:
    assert diagnose(facts(dht_enabled=True, dht_nodes=None), LATE) == "no peers known"
    assert diagnose(facts(dht_enabled=True, dht_nodes=5), LATE) == "no peers known"


def test_known_but_unreachable_summarises_errors() -> None:
    f = facts(known_peers=3, connect_errors=("connection refused",) * 3 + ("timeout",))
    r = diagnose(f, LATE)
    assert r == "3 peers known but none reachable: connection refused x3, timeout"


def test_connecting() -> None:
    assert (
        diagnose(facts(known_peers=2, connecting=2), LATE)
        == "connecting to 2 peers, none connected yet"
    )


def test_choked_by_everyone_useful() -> None:
    f = facts(connected=2, useful_peers=2, choking_us=2, missing_pieces=10)
    r = diagnose(f, LATE)
    assert r is not None and "choking us" in r and "2 peers" in r


def test_missing_pieces_name_files() -> None:
    f = facts(
        connected=1,
        useful_peers=0,
        missing_pieces=7,
        unavailable_pieces=7,
        unavailable_files=("d/a.bin", "d/b.bin", "d/c.bin", "d/e.bin"),
    )
    r = diagnose(f, LATE)
    assert (
        r
        == "7 wanted pieces (in d/a.bin, d/b.bin, d/c.bin and 1 more) held by none of the 1 connected peer"
    )


def test_missing_pieces_beat_trackers_failing() -> None:
    """A peer-level cause is more specific than a discovery-level one."""
    f = facts(
        trackers=(TrackerFact("http://a", True, "refused"),),
        connected=1,
        useful_peers=0,
        missing_pieces=1,
        unavailable_pieces=1,
    )
    r = diagnose(f, LATE)
    assert r is not None and r.startswith("1 wanted piece held by none")


def test_metadata_without_extension() -> None:
    f = facts(state="metadata", connected=1, metadata_peers=0)
    r = diagnose(f, LATE)
    assert r is not None and r.startswith("waiting for metadata") and "ut_metadata" in r


@given(
    state=st.sampled_from(["metadata", "downloading", "seeding", "checking", "stopped"]),
    since=st.floats(0, 1e6),
    known=st.integers(0, 100),
    connecting=st.integers(0, 20),
    connected=st.integers(0, 60),
    useful=st.integers(0, 60),
    choking=st.integers(0, 60),
    missing=st.integers(0, 10**6),
    unavailable=st.integers(0, 10**6),
    trackers=st.lists(
        st.tuples(st.text(max_size=20), st.booleans(), st.none() | st.text(max_size=30)), max_size=5
    ),
    errors=st.lists(st.text(max_size=10), max_size=30),
)
def test_always_one_line_or_none(
    state: str,
    since: float,
    known: int,
    connecting: int,
    connected: int,
    useful: int,
    choking: int,
    missing: int,
    unavailable: int,
    trackers: list[tuple[str, bool, str | None]],
    errors: list[str],
) -> None:
    f = facts(
        state=state,
        known_peers=known,
        connecting=connecting,
        connected=connected,
        useful_peers=useful,
        choking_us=choking,
        missing_pieces=missing,
        unavailable_pieces=unavailable,
        trackers=tuple(TrackerFact(*t) for t in trackers),
        connect_errors=tuple(errors),
    )
    r = diagnose(f, T0 + since)
    if state not in ("metadata", "downloading") or since < 15:
        assert r is None
    else:
        assert isinstance(r, str) and r


def test_waiting_for_piece_layers_is_named() -> None:
    """A v2 magnet's pieces cannot be requested before its piece layers
    (BEP 52): that, not the pieces, is what the user waits for."""
    f = facts(connected=2, useful_peers=2, missing_pieces=40, layers_missing=3)
    r = diagnose(f, LATE)
    assert r is not None and r.startswith("waiting for the piece layers of 3 files")
    assert "2 connected peers" in r
