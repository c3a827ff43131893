import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.rate import MAX_QUEUE_DEPTH, RateMeter, is_snubbed, queue_depth


def test_empty_meter_is_zero() -> None:
    assert RateMeter().rate(100.0) == 0.0


def test_steady_rate() -> None:
    m = RateMeter(window=5)
    t = 1000.0
    for _ in range(100):  # 10 s at 10 blocks/s of 16 KiB
        m.add(16384, t)
        t += 0.1
    assert m.rate(t) == pytest.approx(163840, rel=0.05)
    assert m.total == 100 * 16384


def test_first_block_is_not_an_enormous_rate() -> None:
    m = RateMeter()
    m.add(16384, 5.0)
    assert m.rate(5.001) == pytest.approx(16384)


def test_window_forgets_old_traffic() -> None:
    m = RateMeter(window=5)
    m.add(10**6, 10.0)
    assert m.rate(12.0) > 0
    assert m.rate(15.5) == 0.0
    m.add(1000, 100.0)  # a long gap clears everything at once
    assert m.rate(100.5) == pytest.approx(1000 / 4.5)  # 4 whole seconds + the current half


def test_rate_decays_after_traffic_stops() -> None:
    m = RateMeter(window=5)
    for k in range(50):
        m.add(1000, 10.0 + k * 0.1)
    r0 = m.rate(15.0)
    r1 = m.rate(17.0)
    assert r1 < r0


@given(
    st.lists(st.tuples(st.integers(0, 1 << 20), st.floats(0, 50, allow_nan=False)), max_size=60),
    st.integers(1, 10),
)
def test_meter_matches_a_naive_sliding_window(events: list[tuple[int, float]], window: int) -> None:
    events = sorted(events, key=lambda e: e[1])
    m = RateMeter(window=window)
    for n, t in events:
        m.add(n, t)
    if not events:
        return
    now = events[-1][1] + 0.25
    lo = int(now) - (window - 1)
    expect = sum(n for n, t in events if int(t) >= lo)
    span = max(1.0, min(now - events[0][1], (window - 1) + (now - int(now))))
    assert m.rate(now) == pytest.approx(expect / span)
    assert m.total == sum(n for n, _ in events)


def test_queue_depth_bounds() -> None:
    assert queue_depth(0.0) == 4
    assert queue_depth(1e12) == MAX_QUEUE_DEPTH
    assert queue_depth(1e12, reqq=250) == 250
    # 1 MiB/s for 3 s of 16 KiB blocks = 192 requests
    assert queue_depth(1024 * 1024, rtt=3.0) == 192
    assert queue_depth(100_000, min_depth=10) == 19
    assert queue_depth(10.0, min_depth=10) == 10


def test_snubbed() -> None:
    assert not is_snubbed(100.0, 159.0)
    assert is_snubbed(100.0, 160.0)
    assert is_snubbed(100.0, 110.0, timeout=10.0)


@given(
    st.lists(
        st.tuples(st.integers(0, 1 << 24), st.floats(-1e3, 1e6, allow_nan=False)), max_size=40
    ),
    st.floats(-1e3, 1e6, allow_nan=False),
)
def test_meter_survives_clock_steps(events: list[tuple[int, float]], query: float) -> None:
    """Out-of-order or stepped clocks never give a negative or infinite rate."""
    m = RateMeter()
    for n, t in events:
        m.add(n, t)
        r = m.rate(t)
        assert 0.0 <= r <= sum(n for n, _ in events)
    r = m.rate(query)
    assert 0.0 <= r <= sum(n for n, _ in events)
