"""swarm.core.requests: request timeouts, snubbing and pipeline depth, with time passed in."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.rate import DEFAULT_QUEUE_TIME
from swarm.core.requests import (
    ENDGAME_PATIENCE,
    MAX_PIPELINE,
    REQUEST_TIMEOUT,
    SHARED_SEED_QUEUE_TIME,
    SLOW_START,
    SNUB_TIMEOUT,
    Verdict,
    is_delivering,
    pipeline_depth,
    refill_count,
    request_verdict,
    shared_seed_queue_time,
)
from swarm.core.wire import BLOCK_SIZE


def verdict(oldest: float | None, last_block: float, now: float, *, interested: bool = True,
            choking: bool = False) -> Verdict:
    return request_verdict(oldest, last_block, interested=interested, peer_choking=choking, now=now)


def test_requests_time_out_only_when_the_peer_also_sent_nothing() -> None:
    assert verdict(0.0, 0.0, REQUEST_TIMEOUT) is Verdict.OK  # not yet: strictly older
    assert verdict(0.0, 0.0, REQUEST_TIMEOUT + 0.1) is Verdict.TIMED_OUT
    # an old request at a peer that keeps delivering other blocks is slow, not dead
    assert verdict(0.0, REQUEST_TIMEOUT, REQUEST_TIMEOUT + 1) is Verdict.OK


def test_a_silent_unchoking_peer_with_nothing_asked_is_snubbed() -> None:
    assert verdict(None, 0.0, SNUB_TIMEOUT + 1) is Verdict.SNUBBED
    assert verdict(None, 0.0, SNUB_TIMEOUT - 1) is Verdict.OK
    # choked or not interested: silence is expected
    assert verdict(None, 0.0, SNUB_TIMEOUT + 1, choking=True) is Verdict.OK
    assert verdict(None, 0.0, SNUB_TIMEOUT + 1, interested=False) is Verdict.OK


def test_pipeline_depth_snubbed_slow_start_and_caps() -> None:
    assert pipeline_depth(10e6, 250, 10**9, snubbed=True) == 1
    assert pipeline_depth(0.0, 250, 0, snubbed=False) == SLOW_START
    # one more request per block received while the rate is unknown
    assert pipeline_depth(0.0, 250, 10 * BLOCK_SIZE, snubbed=False) == SLOW_START + 10
    assert pipeline_depth(0.0, 20, 100 * BLOCK_SIZE, snubbed=False) == 20  # their reqq
    assert pipeline_depth(1e9, 100000, 0, snubbed=False) <= MAX_PIPELINE


def test_slow_start_ends_once_the_rate_is_measured() -> None:
    """Issue 17: the slow-start term grew with every block ever received, so a
    leecher kept its whole reqq (4-8 MiB) queued at a 500 KB/s seed; pieces
    queued at the seed are invisible to the other leechers, which asked for
    the same ones: second copies from the seed."""
    rate = 500e3
    measured = pipeline_depth(rate, 500, 100 * 2**20, snubbed=False, warming=False)
    assert measured == pipeline_depth(rate, 500, 0, snubbed=False)  # the rate's depth, ~3 s of data
    assert measured < 100
    assert pipeline_depth(rate, 500, 100 * 2**20, snubbed=False) == 500  # still warming up: grows
    assert pipeline_depth(0.0, 500, 100 * 2**20, snubbed=False, warming=False) == SLOW_START


def test_a_seed_shared_with_other_leechers_gets_one_second_of_requests() -> None:
    """Issue 17: what is queued at a shared seed are pieces the other leechers cannot
    know are taken; three seconds of them made for second copies."""
    assert shared_seed_queue_time(True, True) == SHARED_SEED_QUEUE_TIME == 1.0
    assert shared_seed_queue_time(True, False) == DEFAULT_QUEUE_TIME  # one link: the seed is ours
    assert shared_seed_queue_time(False, True) == DEFAULT_QUEUE_TIME
    rate = 1e6
    shared = pipeline_depth(rate, 500, 0, snubbed=False, warming=False, queue_time=1.0)
    assert shared * 3 == pytest.approx(pipeline_depth(rate, 500, 0, snubbed=False, warming=False), abs=3)


def test_refill_in_batches() -> None:
    assert refill_count(64, 0) == 64
    assert refill_count(64, 60) == 0  # 4 < 64 // 8: wait for a bigger batch
    assert refill_count(64, 56) == 8
    assert refill_count(64, 70) == 0


@given(st.floats(0, 1e10), st.integers(1, 200000), st.integers(0, 1 << 40), st.booleans())
def test_depth_is_between_one_and_the_cap(rate: float, reqq: int, downloaded: int, snubbed: bool) -> None:
    d = pipeline_depth(rate, reqq, downloaded, snubbed=snubbed)
    assert 1 <= d <= max(1, min(reqq, MAX_PIPELINE))


def test_a_peer_is_delivering_until_quiet_for_the_endgame_patience() -> None:
    assert is_delivering(10.0, 10.0 + ENDGAME_PATIENCE - 0.1)
    assert not is_delivering(10.0, 10.0 + ENDGAME_PATIENCE)
    # quiet sooner than the requests waiting on it time out
    assert not is_delivering(10.0, 10.6, timeout=1.0)
