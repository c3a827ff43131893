"""swarm.core.ratelimit: RATE parsing and the byte token bucket (pure, time passed in)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.ratelimit import MIN_BURST, RateLimit, parse_rate
from swarm.errors import BadInput


def test_parse_rate_binary_units() -> None:
    assert parse_rate("0") == 0
    assert parse_rate("1000") == 1000
    assert parse_rate("500K") == 500 * 1024
    assert parse_rate("2M") == 2 * 1024 * 1024
    assert parse_rate("1.5g") == int(1.5 * 1024**3)
    assert parse_rate("2MiB") == parse_rate("2MB") == parse_rate("2M/s") == 2 * 1024 * 1024
    for bad in ("", "fast", "-1K", "1T", "nan", "inf", "K"):
        with pytest.raises(BadInput):
            parse_rate(bad)


def test_unlimited_is_free() -> None:
    b = RateLimit(0)
    b.consume(10**12, 0.0)
    assert b.unlimited and b.wait(0.0) == 0.0 and b.reserve(10**9, 0.0) == 0.0
    assert b.depth_cap(3.0, 16384) is None


def test_debt_is_repaid_at_the_rate() -> None:
    b = RateLimit(100_000, now=0.0)
    assert b.burst == MIN_BURST
    b.consume(MIN_BURST + 50_000, 0.0)  # the burst, then half a second of debt
    assert b.wait(0.0) == pytest.approx(0.5)
    assert b.wait(0.25) == pytest.approx(0.25)
    assert b.wait(0.5) == 0.0
    assert b.reserve(20_000, 0.5) == pytest.approx(0.2)
    assert b.depth_cap(3.0, 16384) == 19


@given(st.lists(st.tuples(st.floats(0, 2), st.integers(1, 300_000)), min_size=1, max_size=60))
def test_bytes_moved_when_allowed_stay_within_rate_times_time_plus_burst(steps: list[tuple[float, int]]) -> None:
    """A mover that only moves when ``wait`` says 0 moves at most rate*T + burst + its last chunk."""
    rate = 1_000_000
    b = RateLimit(rate, now=0.0)
    now = 0.0
    moved = 0
    for gap, n in steps:
        now += gap
        now += b.wait(now)  # paused until out of debt
        b.consume(n, now)
        moved += n
        assert moved <= rate * now + b.burst + n + 1e-6
