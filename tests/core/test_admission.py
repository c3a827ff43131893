"""Pure admission decisions (issue 16 #2, #3, #6): time passed in."""

from __future__ import annotations

from swarm.core.admission import (
    SourceBudget,
    TokenBucket,
    UploadUse,
    idle_to_evict,
    idle_unchoked,
    ip_at_cap,
    next_unused_check,
    slots_to_reclaim,
    takes_without_progress,
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


def test_an_unused_unchoke_goes_back_within_seconds_when_a_peer_that_asked_waits() -> None:
    """Round robin: a slot offered and not used goes to a peer that requests, after
    UNUSED_UNCHOKE_AFTER, not IDLE_UNCHOKE_AFTER; with nobody waiting who asked,
    nothing changes early (an honest peer with a full pipeline elsewhere keeps its
    slot), and a peer that requested since its unchoke keeps it."""
    squatter = UploadUse("squatter", True, unchoked_at=10.0, last_request=0.0)
    user = UploadUse("user", True, unchoked_at=10.0, last_request=12.0, asked=True)
    asker = UploadUse("asker", True, unchoked_at=None, last_request=11.0, asked=True)
    silent = UploadUse("silent", True, unchoked_at=None, last_request=0.0)  # cannot ask while choked
    assert slots_to_reclaim([squatter, user, asker], 12.9, 15.0, 3.0) == set()
    assert slots_to_reclaim([squatter, user, asker], 13.0, 15.0, 3.0) == {"squatter"}
    assert slots_to_reclaim([squatter, user, silent], 20.0, 15.0, 3.0) == set()
    passed_over = UploadUse("asker", True, None, 11.0, asked=True, passed_over=True)
    assert slots_to_reclaim([squatter, user, passed_over], 20.0, 15.0, 3.0) == set()
    assert slots_to_reclaim([squatter, user, silent], 25.0, 15.0, 3.0) == {"squatter"}  # the idle rule


def test_the_engine_looks_again_when_an_unchoke_becomes_unused() -> None:
    """Not at its next tick (up to a second later): the moment the youngest unused
    unchoke reaches UNUSED_UNCHOKE_AFTER while a peer that asked waits."""
    young = UploadUse("young", True, unchoked_at=10.4, last_request=0.0)
    used = UploadUse("used", True, unchoked_at=10.0, last_request=10.2, asked=True)
    asker = UploadUse("asker", True, unchoked_at=None, last_request=10.1, asked=True)
    assert next_unused_check([young, used, asker], 10.5, 1.0) == 11.4
    assert next_unused_check([young, used], 10.5, 1.0) is None  # nobody waits
    assert next_unused_check([young, used, asker], 11.4, 1.0) is None  # due now: slots_to_reclaim has it
    assert slots_to_reclaim([young, used, asker], 11.4, 15.0, 1.0) == {"young"}


def test_a_client_that_never_finishes_gives_its_slot_to_one_that_progresses() -> None:
    """We sent it far more than the pieces it announced: while a peer that asked waits,
    its slot goes back even though it keeps requesting; not while nobody waits."""
    piece = 256 * 1024
    assert not takes_without_progress(8 * 2**20, 0, piece, slack=16 * 2**20)
    assert not takes_without_progress(100 * 2**20, 350, piece, slack=16 * 2**20)  # announces
    assert takes_without_progress(100 * 2**20, 10, piece, slack=16 * 2**20)
    taker = UploadUse("taker", True, unchoked_at=10.0, last_request=19.0, asked=True, wasteful=True)
    asker = UploadUse("asker", True, unchoked_at=None, last_request=18.0, asked=True)
    assert slots_to_reclaim([taker, asker], 20.0, 15.0, 3.0) == {"taker"}
    assert slots_to_reclaim([taker], 20.0, 15.0, 3.0) == set()
    other_taker = UploadUse("t2", True, unchoked_at=None, last_request=18.0, asked=True, wasteful=True)
    assert slots_to_reclaim([taker, other_taker], 20.0, 15.0, 3.0) == set()


def test_ip_cap() -> None:
    ips = ["127.0.0.1"] * 8 + ["127.0.0.2"]
    assert ip_at_cap(ips, "127.0.0.1", 8)
    assert not ip_at_cap(ips, "127.0.0.2", 8)
    assert not ip_at_cap(ips, "127.0.0.1", 0)
