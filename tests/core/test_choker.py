import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.choker import Choker, PeerInfo


def peer(key: str, down: float = 0.0, up: float = 0.0, **kw: object) -> PeerInfo:
    kw.setdefault("interested", True)
    return PeerInfo(key=key, down_rate=down, up_rate=up, **kw)  # type: ignore[arg-type]


def test_reciprocation_best_uploaders_get_the_slots() -> None:
    c = Choker(4, rng=random.Random(1))
    peers = [peer(f"p{i}", down=float(i * 1000)) for i in range(10)]
    un = c.rechoke(peers, 0.0, seeding=False)
    assert {"p9", "p8", "p7", "p6"} <= un
    assert len(un) == 5  # four regular + one optimistic
    assert c.optimistic in un and c.optimistic not in {"p9", "p8", "p7", "p6"}


def test_due_every_ten_seconds() -> None:
    c = Choker(rng=random.Random(0))
    assert c.due(0.0)
    c.rechoke([], 0.0, seeding=False)
    assert not c.due(9.9)
    assert c.due(10.0)
    assert c.next_at == 10.0


def test_optimistic_rotates_every_30s_not_every_10() -> None:
    c = Choker(2, rng=random.Random(5))
    peers = [peer("fast1", down=9e6), peer("fast2", down=8e6)] + [peer(f"c{i}") for i in range(6)]
    history = []
    t = 0.0
    for _ in range(9):
        c.rechoke(peers, t, seeding=False)
        history.append(c.optimistic)
        t += 10.0
    assert history[0] == history[1] == history[2]
    assert history[3] == history[4] == history[5]
    assert history[6] == history[7] == history[8]
    assert history[0] != history[3] and history[3] != history[6]


def test_optimistic_replaced_when_it_leaves() -> None:
    c = Choker(1, rng=random.Random(2))
    peers = [peer("fast", down=1e6), peer("a"), peer("b")]
    c.rechoke(peers, 0.0, seeding=False)
    gone = c.optimistic
    rest = [p for p in peers if p.key != gone]
    un = c.rechoke(rest, 10.0, seeding=False)
    assert c.optimistic is not None and c.optimistic != gone
    assert un == {"fast", c.optimistic}


def test_newcomers_three_times_as_likely() -> None:
    rng = random.Random(7)
    wins = Counter()
    for _ in range(3000):
        c = Choker(1, rng=rng)
        now = 1000.0
        peers = [peer("top", down=1e6)]
        peers += [peer(f"old{i}", connected_at=0.0) for i in range(3)]
        peers.append(peer("new", connected_at=now - 5.0))
        c.rechoke(peers, now, seeding=False)
        wins["new" if c.optimistic == "new" else "old"] += 1
    # weights 3 : 1+1+1 -> the newcomer wins half the time (one old peer: 1/6)
    assert 0.45 < wins["new"] / 3000 < 0.55


def test_snubbed_peers_lose_their_slot() -> None:
    c = Choker(2, rng=random.Random(3))
    peers = [peer("a", down=5e6), peer("b", down=4e6), peer("c", down=1e3)]
    assert {"a", "b"} <= c.rechoke(peers, 0.0, seeding=False)
    peers[0] = peer("a", down=5e6, snubbed=True, optimistic_ok=False)
    un = c.rechoke(peers, 10.0, seeding=False)
    assert "a" not in un
    assert {"b", "c"} <= un


def test_seeds_not_ranked_and_uninterested_ready() -> None:
    c = Choker(2, rng=random.Random(4))
    peers = [
        peer("seed", down=9e9, interested=False, is_seed=True),
        peer("ready", down=8e9, interested=False),  # gives us much, wants nothing yet
        peer("x", down=3e6),
        peer("y", down=2e6),
        peer("z", down=1e6),
    ]
    un = c.rechoke(peers, 0.0, seeding=False)
    assert "seed" not in un
    assert {"ready", "x", "y"} <= un
    assert un == {"ready", "x", "y", "z"}  # z is the only optimistic candidate


def test_seed_mode_ranks_by_upload_rate() -> None:
    c = Choker(2, rng=random.Random(6))
    peers = [
        peer("slow", down=9e9, up=1e3),
        peer("fast", up=5e7),
        peer("mid", up=1e7),
        peer("idle", up=0.0, interested=False),
    ]
    un = c.rechoke(peers, 0.0, seeding=True)
    assert {"fast", "mid"} <= un
    assert c.optimistic == "slow"
    assert "idle" not in un


def test_uninterested_peers_are_not_optimistic() -> None:
    c = Choker(1, rng=random.Random(8))
    un = c.rechoke([peer("a", interested=False), peer("b", interested=False)], 0.0, seeding=False)
    assert un == set() and c.optimistic is None


def test_stable_ties_keep_current_unchoked() -> None:
    c = Choker(2, rng=random.Random(9))
    peers = [peer(k, down=100.0) for k in "abcdef"]
    first = c.rechoke(peers, 0.0, seeding=False) - {c.optimistic}
    second = c.rechoke(peers, 10.0, seeding=False) - {c.optimistic}
    assert first == second


@pytest.mark.parametrize("slots", [0, 1, 4])
def test_slot_count_respected(slots: int) -> None:
    c = Choker(slots, rng=random.Random(slots))
    peers = [peer(f"p{i}", down=float(i)) for i in range(20)]
    un = c.rechoke(peers, 0.0, seeding=False)
    assert len(un) == (slots + 1 if slots else 0)


def test_snubbed_peers_only_fill_spare_slots() -> None:
    c = Choker(3, rng=random.Random(11))
    peers = [
        peer("good", down=1e6),
        peer("s1", down=5e6, snubbed=True, optimistic_ok=False),
        peer("s2", down=1e3, snubbed=True, optimistic_ok=False),
        peer("s3", down=0.0, snubbed=True, optimistic_ok=False),
    ]
    un = c.rechoke(peers, 0.0, seeding=False)
    assert un == {"good", "s1", "s2"}  # two spare slots, best snubbed first
    more = peers + [peer(f"n{i}", down=10.0) for i in range(3)]
    un = c.rechoke(more, 10.0, seeding=False)
    assert not un & {"s1", "s2", "s3"}


@given(
    st.lists(
        st.tuples(
            st.booleans(),  # interested
            st.floats(0, 1e8),  # down
            st.floats(0, 1e8),  # up
            st.booleans(),  # snubbed
            st.floats(0, 200),  # connected_at
            st.booleans(),  # is_seed
            st.booleans(),  # optimistic_ok
        ),
        max_size=30,
    ),
    st.integers(0, 6),
    st.booleans(),
    st.lists(st.floats(0, 15), min_size=1, max_size=8),
    st.integers(0, 100),
)
def test_rechoke_invariants(
    specs: list[tuple[bool, float, float, bool, float, bool, bool]],
    slots: int,
    seeding: bool,
    steps: list[float],
    seed: int,
) -> None:
    peers = [
        PeerInfo(f"p{i}", it, d, u, sn, ca, se, ok)
        for i, (it, d, u, sn, ca, se, ok) in enumerate(specs)
    ]
    keys = {p.key for p in peers}
    interested = {p.key for p in peers if p.interested}
    c = Choker(slots, rng=random.Random(seed))
    now = 200.0
    for dt in steps:
        now += dt
        un = c.rechoke(peers, now, seeding)
        assert un <= keys
        assert not c.due(now)
        # regular interested slots + one optimistic; "ready" peers are not interested
        assert len(un & interested) <= slots + 1
        assert len(un - interested) <= slots
        if c.optimistic is not None:
            assert c.optimistic in un and c.optimistic in interested
        if slots and interested:
            assert un & interested  # someone interested is always served
        if not seeding:
            best_free = [p for p in peers if p.interested and not p.snubbed and not p.is_seed]
            if best_free and slots:
                top = max(p.down_rate for p in best_free)
                # the best uploader to us is never choked
                assert any(p.key in un and p.down_rate == top for p in best_free)


def test_seeding_rotates_the_slots_by_upload_rate() -> None:
    """Issue 17 (BEP 3, libtorrent's round-robin seed choker): a seed's regular slots
    go to the fastest peers, but a peer served for SEED_ROTATION while others wait
    makes room; the waiting ones take the slots in order of rate."""
    from swarm.core.choker import SEED_ROTATION

    c = Choker(2, rng=random.Random(3))
    # the served ones look fastest: we send to them, the others are choked (rate 0)
    rates = {"a": 5e7, "b": 4e7, "c": 0.0, "d": 0.0, "e": 0.0}

    def round_at(t: float) -> set[object]:
        peers = [peer(k, up=rates[k], connected_at=-1000.0) for k in "abcde"]
        return c.rechoke(peers, t, seeding=True) - {c.optimistic}

    assert round_at(0.0) == {"a", "b"}
    assert round_at(10.0) == {"a", "b"}  # not yet their full turn
    regular = round_at(SEED_ROTATION)
    assert not regular & {"a", "b"} and len(regular) == 2  # the waiting peers' turn
    # leeching: no rotation, reciprocation decides
    c2 = Choker(2, rng=random.Random(3))
    lp = [peer(k, down=rates[k], connected_at=-1000.0) for k in "abcde"]
    assert c2.rechoke(lp, 0.0, seeding=False) - {c2.optimistic} == {"a", "b"}
    assert c2.rechoke(lp, SEED_ROTATION, seeding=False) - {c2.optimistic} == {"a", "b"}


@pytest.mark.parametrize("seed", range(20))
def test_seeding_prefers_waiting_peers_that_asked_for_something(seed: int) -> None:
    """Slot squatting (issue 16): 50 peers say interested and never request; one honest
    leecher has asked (allowed-fast requests, or before it was choked). When a slot frees,
    it goes to the peer that asked, not to a squatter drawn at random."""
    choker = Choker(slots=4, rng=random.Random(seed))
    squatters = [PeerInfo(key=f"s{i}", interested=True, down_rate=0.0, up_rate=0.0) for i in range(50)]
    honest = PeerInfo(key="honest", interested=True, down_rate=0.0, up_rate=0.0, asked=True)
    chosen = choker.rechoke([*squatters, honest], now=0.0, seeding=True)
    assert "honest" in chosen


@pytest.mark.parametrize("seed", range(5))
def test_seeding_serves_peers_that_progress_before_clients_that_never_finish(seed: int) -> None:
    """Four connections download fast and announce nothing (we sent them far more than
    their pieces: ``wasteful``); an honest leecher that has asked takes a regular slot
    from them at once, and keeps it when its rotation is due and they wait."""
    choker = Choker(slots=4, rng=random.Random(seed))
    takers = [peer(f"t{i}", up=5e6, asked=True, wasteful=True) for i in range(4)]
    honest = peer("honest", asked=True)
    assert choker.rechoke(takers, now=0.0, seeding=True) >= {"t0", "t1", "t2", "t3"}
    assert "honest" in choker.rechoke([*takers, honest], now=10.0, seeding=True)
    later = [*takers, peer("honest", up=1e8, asked=True)]
    assert "honest" in choker.rechoke(later, now=50.0, seeding=True)  # held 40 s: rotation due


@pytest.mark.parametrize("seeding", [True, False])
@pytest.mark.parametrize("seed", range(10))
def test_clients_that_never_finish_get_no_slot_while_others_want_data(seed: int, seeding: bool) -> None:
    """Eight connections take without progressing (``wasteful``) and held every slot;
    an honest peer is interested. Ranked last, they still took the regular slots the
    honest peer did not (on loopback the seed is CPU-bound: every byte sent to them was
    one the honest leecher waited for, x0.61-0.98 of its speed alone); the optimistic
    one alone cost it 20-30 MiB/s. Now they get no slot while a peer that progresses is
    interested, and every slot again once none is (the seed stays work-conserving)."""
    choker = Choker(slots=4, rng=random.Random(seed))
    takers = [peer(f"t{i}", down=1e5, up=5e6, asked=True, wasteful=True) for i in range(8)]
    assert len(choker.rechoke(takers, now=0.0, seeding=seeding)) == 5  # nobody else: they may have it all
    honest = peer("honest", asked=True)
    for now in (10.0, 20.0, 30.0, 40.0):
        assert choker.rechoke([*takers, honest], now=now, seeding=seeding) == {"honest"}
        assert choker.optimistic is None
    done = peer("honest", asked=True, interested=False)
    assert len(choker.rechoke([*takers, done], now=50.0, seeding=seeding) & {t.key for t in takers}) == 5


@pytest.mark.parametrize("seed", range(5))
def test_a_squatter_that_is_interested_also_keeps_clients_that_never_finish_out(seed: int) -> None:
    """Any interested peer that is not wasteful counts, a silent one too: its idle slot
    costs nothing and is reclaimed (``swarm.core.admission``); until it is passed over
    the wasteful ones wait."""
    choker = Choker(slots=4, rng=random.Random(seed))
    takers = [peer(f"t{i}", up=5e6, asked=True, wasteful=True) for i in range(8)]
    chosen = choker.rechoke([*takers, peer("silent")], now=0.0, seeding=True)
    assert chosen == {"silent"}
    passed_over = peer("silent", interested=False)  # the engine's view once caught idle
    assert len(choker.rechoke([*takers, passed_over], now=10.0, seeding=True)) == 5


def test_a_peer_that_turns_wasteful_in_a_slot_calls_for_a_rechoke_while_others_want_data() -> None:
    """Slots change between rechokes (one every 10 s): a peer unchoked when a slot was
    free, or at the last rechoke (as the optimistic one too), may show itself a client
    that never finishes a moment later (after a few scattered requests). While a peer
    that progresses is interested that calls for a rechoke now: a 256 MiB download takes
    2 s on loopback, and such a peer took 20-30 MiB a second of the seed's."""
    choker = Choker(slots=2, rng=random.Random(1))
    honest = peer("honest", asked=True, unchoked=True)
    fresh = [peer(f"t{i}", unchoked=True) for i in range(3)]
    chosen = choker.rechoke([honest, *fresh], now=0.0, seeding=True)
    assert len(chosen) == 3 and choker.optimistic in {"t0", "t1", "t2"}
    fresh = [peer(f"t{i}", unchoked=f"t{i}" in chosen) for i in range(3)]
    assert not choker.wasteful_holds_a_slot([honest, *fresh])
    shown = [peer(p.key, up=5e6, asked=True, unchoked=p.unchoked, wasteful=True) for p in fresh]
    assert choker.wasteful_holds_a_slot([honest, *shown])
    chosen = choker.rechoke([honest, *shown], now=1.0, seeding=True)
    assert chosen == {"honest"}
    after = [peer(k.key, up=5e6, asked=True, unchoked=k.key in chosen, wasteful=True) for k in shown]
    assert not choker.wasteful_holds_a_slot([honest, *after])
    # nobody else wants anything: they may keep every slot
    done = peer("honest", interested=False, unchoked=True)
    assert not choker.wasteful_holds_a_slot([done, *shown])
