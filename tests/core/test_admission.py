"""Pure admission decisions (issue 16 #2, #3, #6): time passed in."""

from __future__ import annotations

from swarm.core.admission import (
    SourceBudget,
    TokenBucket,
    UploadUse,
    idle_to_evict,
    idle_unchoked,
    ip_at_cap,
)


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    b = TokenBucket(burst=3, rate=2.0, now=0.0)
    assert [b.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert b.take(0.5) and not b.take(0.5)  # one token per half second
    assert sum(b.take(100.0) for _ in range(10)) == 3  # never more than the burst


def test_source_budget_survives_reconnects_and_resets_after_the_window() -> None:
    budget = SourceBudget(per_source=10, window=60.0, max_sources=3)
    budget.spend("10.0.0.1", 0.0, 7)
    assert budget.left("10.0.0.1", 1.0) == 3
    budget.spend("10.0.0.1", 2.0, 3)
    assert budget.left("10.0.0.1", 3.0) == 0
    assert budget.left("10.0.0.2", 3.0) == 10
    assert budget.left("10.0.0.1", 61.0) == 10


def test_source_budget_remembers_a_bounded_number_of_sources() -> None:
    budget = SourceBudget(per_source=5, window=60.0, max_sources=3)
    for i in range(100):
        budget.spend(f"10.0.0.{i}", 0.0, 5)
    assert len(budget._used) == 3
    assert budget.left("10.0.0.99", 1.0) == 0


def test_idle_unchoked_peer_loses_its_slot_a_requesting_one_keeps_it() -> None:
    peers = [
        UploadUse("squatter", True, unchoked_at=0.0, last_request=0.0),
        UploadUse("honest", True, unchoked_at=0.0, last_request=25.0),
        UploadUse("choked", True, unchoked_at=None, last_request=0.0),
        UploadUse("fresh", True, unchoked_at=20.0, last_request=0.0),
    ]
    assert idle_unchoked(peers, 29.0, after=30.0) == set()
    assert idle_unchoked(peers, 30.0, after=30.0) == {"squatter"}
    assert idle_unchoked(peers, 50.0, after=30.0) == {"squatter", "fresh"}


def test_idle_to_evict_picks_the_longest_idle_interested_peer_that_gives_nothing() -> None:
    peers = [
        UploadUse("a", True, None, last_request=10.0, caught_idle=True),
        UploadUse("b", True, None, last_request=5.0, caught_idle=True),
        UploadUse("waiting", True, None, last_request=0.0),  # never unchoked: not idle
        UploadUse("giver", True, None, last_request=0.0, gave_us=1, caught_idle=True),
        UploadUse("not-interested", False, None, last_request=0.0, caught_idle=True),
    ]
    assert idle_to_evict(peers, 60.0, after=60.0) is None
    assert idle_to_evict(peers, 66.0, after=60.0) == "b"
    assert idle_to_evict(peers, 100.0, after=60.0) == "b"


def test_ip_cap() -> None:
    ips = ["127.0.0.1"] * 8 + ["127.0.0.2"]
    assert ip_at_cap(ips, "127.0.0.1", 8)
    assert not ip_at_cap(ips, "127.0.0.2", 8)
    assert not ip_at_cap(ips, "127.0.0.1", 0)
