import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.bitfield import Bitfield
from swarm.core.picker import ENDGAME_REQUESTERS, Block, PiecePicker
from swarm.errors import ProtocolError

BS = 16384


def bf(n: int, idx: object) -> Bitfield:
    b = Bitfield(n)
    for i in idx:  # type: ignore[attr-defined]
        b.set(i)
    return b


def make(
    n: int = 8, plen: int = 4 * BS, total: int | None = None, have: object = (), seed: int = 1
) -> PiecePicker:
    total = n * plen if total is None else total
    return PiecePicker(n, plen, total, have=bf(n, have), rng=random.Random(seed))


def fetch_piece(p: PiecePicker, peer: object, has: Bitfield | None) -> list[Block]:
    """Pick one piece's worth and deliver it; returns the blocks."""
    blocks = p.pick(peer, has, 4)
    for b in blocks:
        p.on_block(peer, b.index, b.begin)
    return blocks


def test_geometry_last_piece_and_block_short() -> None:
    p = PiecePicker(3, 2 * BS, 2 * 2 * BS + 100, rng=random.Random(0))
    assert p.piece_size(2) == 100
    assert p.blocks_in(2) == 1
    p.set_priorities([0, 0, 1])
    assert p.pick("a", None, 10) == [Block(2, 0, 100)]


def test_bad_geometry_rejected() -> None:
    with pytest.raises(ValueError):
        PiecePicker(3, BS, 5 * BS)


def test_rarest_first() -> None:
    n = 8
    p = make(n, have=range(4))  # past random-first
    p.add_peer("s1", bf(n, range(n)))  # a full bitfield becomes a seed
    p.add_peer("p2", bf(n, [4, 5, 6]))
    p.add_peer("p3", bf(n, [4, 6]))
    # availability: 4 -> 3, 5 -> 2, 6 -> 3, 7 -> 1
    assert [p.availability(i) for i in range(4, 8)] == [3, 2, 3, 1]
    assert {b.index for b in p.pick("s1", None, 4)} == {7}
    assert {b.index for b in p.pick("s1", None, 4)} == {5}
    # p3 does not have 5 or 7: rarest it has
    assert {b.index for b in p.pick("p3", bf(n, [4, 6]), 4)} <= {4, 6}


def test_random_among_equals() -> None:
    n = 64
    seen = Counter()
    for seed in range(200):
        p = make(n, have=range(4), seed=seed)
        p.add_peer_have_all("s")
        seen[p.pick("s", None, 1)[0].index] += 1
    assert len(seen) > 30  # spread over the 60 equally rare pieces
    assert all(i >= 4 for i in seen)


def test_random_first_pieces() -> None:
    n = 64
    firsts = Counter()
    for seed in range(100):
        p = make(n, seed=seed)
        p.add_peer_have_all("s")
        # make pieces 0..7 far rarer than the rest: rarest-first would always take them
        for k in range(5):
            p.add_peer(f"l{k}", bf(n, range(8, n)))
        firsts[p.pick("s", None, 4)[0].index] += 1
    assert sum(c for i, c in firsts.items() if i >= 8) > 50
    # after 4 pieces, rarest first
    p = make(n, have=range(8, 12), seed=3)
    p.add_peer_have_all("s")
    for k in range(5):
        p.add_peer(f"l{k}", bf(n, range(8, n)))
    assert p.pick("s", None, 4)[0].index < 8


def test_partial_pieces_first() -> None:
    n = 16
    p = make(n, have=range(4))
    p.add_peer_have_all("a")
    p.add_peer_have_all("b")
    first = p.pick("a", None, 2)
    idx = first[0].index
    assert len({b.index for b in first}) == 1
    # b joins the piece a started before starting another
    second = p.pick("b", None, 2)
    assert {b.index for b in second} == {idx}
    assert not set(first) & set(second)
    # a's next pick: a new piece now (its own is fully requested)
    third = p.pick("a", None, 4)
    assert idx not in {b.index for b in third}


def test_prefers_pieces_the_peer_contributes_to() -> None:
    n = 16
    p = make(n, have=range(4))
    for k in "abc":
        p.add_peer_have_all(k)
    pa = p.pick("a", None, 4)[0].index
    pb = p.pick("b", None, 4)[0].index
    assert pa != pb
    p.cancel_requests("b", [Block(pb, 3 * BS, BS)])  # one of b's blocks free again
    p.cancel_requests("a", [Block(pa, 0, BS)])
    got = p.pick("a", None, 1)
    assert got[0].index == pa


def test_never_picks_received_or_requested() -> None:
    n = 4
    p = make(n, have=[0, 1])
    p.add_peer_have_all("a")
    p.add_peer_have_all("b")
    a = p.pick("a", None, 3)
    p.on_block("a", a[0].index, a[0].begin)
    b = p.pick("b", None, 5)
    assert not set(a) & set(b)
    assert len(a) + len(b) == 8
    # now every block is requested: endgame duplicates only of what is still in flight
    assert p.endgame
    for blk in b:  # endgame duplicates go to a drained pipeline only
        p.on_block("b", blk.index, blk.begin)
    dup = p.pick("b", None, 100)
    assert set(dup) == set(a[1:])


def test_priority_zero_never_picked_and_complete() -> None:
    n = 8
    p = make(n)
    p.set_priorities([0, 0, 0, 0, 0, 0, 1, 0])
    p.add_peer_have_all("s")
    got = p.pick("s", None, 100)
    assert {b.index for b in got} == {6}
    for b in got:
        done, _ = p.on_block("s", b.index, b.begin)
    assert done
    p.piece_passed(6)
    assert p.is_complete()
    assert p.pick("s", None, 100) == []


def test_higher_priority_first() -> None:
    n = 16
    p = make(n, have=range(4))
    p.add_peer_have_all("s")
    p.set_priority(15, 7)
    p.set_priority(9, 7)
    got = {b.index for b in p.pick("s", None, 8)}
    assert got == {9, 15}


def test_sequential_window() -> None:
    n = 32
    p = make(n)
    p.add_peer_have_all("s")
    p.set_sequential(True, window_bytes=4 * 4 * BS)  # 4 pieces
    order = []
    for _ in range(6):
        blocks = fetch_piece(p, "s", None)
        order.append(blocks[0].index)
        p.piece_passed(blocks[0].index)
    assert order == [0, 1, 2, 3, 4, 5]
    # a peer lacking the window's pieces: rarest first outside it
    q = p.pick("x", bf(n, [20]), 4)
    assert {b.index for b in q} == {20}


def test_endgame_duplicates_and_cancels() -> None:
    n = 2
    p = make(n, have=[0])
    for k in "abcd":
        p.add_peer_have_all(k)
    a = p.pick("a", None, 10)
    assert len(a) == 4
    assert p.endgame
    b = p.pick("b", None, 10)
    assert set(b) == set(a)  # duplicates
    assert p.pick("c", None, 10) == []  # at most ENDGAME_REQUESTERS per block
    assert ENDGAME_REQUESTERS == 2
    assert p.pick("a", None, 10) == []  # never twice from the same peer
    done, cancels = p.on_block("b", a[0].index, a[0].begin)
    assert not done
    assert cancels == [("a", a[0])]
    assert a[0] not in p.requests_of("a")
    for blk in a[1:]:
        done, cancels = p.on_block("a", blk.index, blk.begin)
        assert {peer for peer, _ in cancels} == {"b"}
    assert done
    assert p.requests_of("b") == [] and p.requests_of("c") == []
    assert p.in_flight == 0


def test_late_duplicate_is_ignored() -> None:
    p = make(2, have=[0])
    p.add_peer_have_all("a")
    blk = p.pick("a", None, 1)[0]
    assert p.on_block("a", blk.index, blk.begin) == (False, [])
    assert p.on_block("x", blk.index, blk.begin) == (False, [])
    assert not p.is_needed(blk.index, blk.begin)


def test_piece_failed_returns_contributors_and_reoffers() -> None:
    n = 4
    p = make(n, have=[0, 1, 2])
    p.add_peer_have_all("a")
    p.add_peer_have_all("b")
    a = p.pick("a", None, 2)
    b = p.pick("b", None, 2)
    for blk in a:
        p.on_block("a", blk.index, blk.begin)
    done = False
    for blk in b:
        done, _ = p.on_block("b", blk.index, blk.begin)
    assert done
    assert p.piece_failed(3) == {"a", "b"}
    assert not p.is_complete()
    again = p.pick("a", None, 10)
    assert sorted(again) == sorted(a + b)


def test_reject_and_remove_peer_return_blocks() -> None:
    n = 4
    p = make(n, have=[0, 1, 2])
    p.add_peer_have_all("a")
    p.add_peer("b", bf(n, [3]))
    a = p.pick("a", None, 4)
    p.on_reject("a", a[1])
    assert p.pick("b", bf(n, [3]), 1) == [a[1]]
    p.remove_peer("a")
    assert p.availability(3) == 1
    got = p.pick("b", bf(n, [3]), 4)
    assert sorted(got) == sorted([a[0], a[2], a[3]])
    assert p.in_flight == 4


def test_hostile_indexes_are_protocol_errors() -> None:
    p = make(4)
    with pytest.raises(ProtocolError):
        p.peer_have("a", 4)
    with pytest.raises(ProtocolError):
        p.peer_have("a", -1)
    with pytest.raises(ProtocolError):
        p.on_block("a", 9, 0)
    with pytest.raises(ProtocolError):
        p.on_block("a", 0, 5)
    with pytest.raises(ProtocolError):
        p.on_block("a", 0, 4 * BS)
    with pytest.raises(ProtocolError):
        p.add_peer("a", Bitfield(5))
    assert not p.is_needed(0, 7)
    assert not p.is_needed(17, 0)


def test_interest_tracking() -> None:
    n = 4
    p = make(n, have=[0])
    p.add_peer("a", bf(n, [0]))
    assert not p.is_interesting("a")
    p.peer_have("a", 2)
    assert p.is_interesting("a")
    p.set_priority(2, 0)
    assert not p.is_interesting("a")
    p.set_priority(2, 1)
    p.piece_passed(2)
    assert not p.is_interesting("a")
    p.add_peer_have_all("s")
    assert p.is_interesting("s")
    for i in (1, 3):
        p.piece_passed(i)
    assert not p.is_interesting("s")


def test_piece_map_and_counts() -> None:
    n = 8
    p = make(n, have=[0, 1])
    p.set_priority(7, 0)
    p.add_peer_have_all("s")
    p.add_peer("x", bf(n, [2]))
    blk = p.pick("s", None, 1)[0]
    m = p.piece_map(8)
    assert m[0:2] == "##" and m[7] == " " and m[blk.index] == "+"
    assert m.count(".") == 4
    assert p.partial_pieces() == {blk.index: (0, 1, 4)}
    assert p.in_flight == 1
    assert p.availability_map(8)[2] == 2
    assert len(p.piece_map(3)) == 3


def test_endgame_block_freed_by_a_cancel_is_offered_again() -> None:
    p = make(2, have=[0])
    for k in "abcd":
        p.add_peer_have_all(k)
    a = p.pick("a", None, 10)
    assert set(p.pick("b", None, 10)) == set(a)
    assert p.pick("d", None, 10) == []
    assert p.pick("d", None, 10) == []  # the scan is skipped now; still nothing
    p.cancel_requests("b", [a[2]])  # b timed out on one block
    assert p.pick("d", None, 10) == [a[2]]
    p.remove_peer("b")
    assert sorted(p.pick("d", None, 10)) == sorted([a[0], a[1], a[3]])


def test_sequential_yields_to_more_urgent_pieces() -> None:
    n = 32
    p = make(n)
    p.add_peer_have_all("s")
    p.set_sequential(True, window_bytes=4 * 4 * BS)
    p.set_priority(n - 1, 7)  # e.g. --first-last: the tail of a media file
    assert {b.index for b in fetch_piece(p, "s", None)} == {n - 1}
    p.piece_passed(n - 1)
    assert {b.index for b in fetch_piece(p, "s", None)} == {0}


def test_urgent_partial_pieces_first() -> None:
    n = 16
    p = make(n, have=range(4))
    p.add_peer_have_all("a")
    p.add_peer_have_all("b")
    first = p.pick("a", None, 4)
    second = p.pick("a", None, 4)
    i, j = first[0].index, second[0].index
    p.cancel_requests("a", [first[3], second[3]])
    p.set_priority(j, 5)
    assert p.pick("b", None, 1) == [second[3]]
    assert p.pick("b", None, 1) == [first[3]]
    assert i != j


def test_narrowed_bitfield_respected_for_own_pieces() -> None:
    """Choked with allowed-fast pieces, the engine narrows what the peer may be asked for."""
    n = 8
    p = make(n, have=range(4))
    p.add_peer_have_all("a")
    first = p.pick("a", None, 2)
    i = first[0].index
    allowed = bf(n, [j for j in range(4, n) if j != i][:1])
    got = p.pick("a", allowed, 8)
    assert got and all(b.index != i and allowed[b.index] for b in got)


def test_endgame_with_a_different_narrowed_bitfield_each_call() -> None:
    """The engine builds a fresh allowed-fast bitfield per call: same size, other pieces."""
    n = 3
    p = make(n, have=[0])
    for k in "abcd":
        p.add_peer_have_all(k)
    a = p.pick("a", None, 8)
    assert {blk.index for blk in a} == {1, 2}
    assert len(p.pick("b", bf(n, [1]), 8)) == 4
    assert p.pick("d", bf(n, [1]), 8) == []  # piece 1's blocks have 2 requesters
    got = p.pick("d", bf(n, [2]), 8)  # a new object, maybe at the same address
    assert sorted(got) == sorted(blk for blk in a if blk.index == 2)


@given(
    st.lists(st.sampled_from("hpm0"), min_size=1, max_size=80),  # have/partial/missing/unwanted
    st.integers(1, 100),
)
def test_piece_map_matches_a_naive_one(states: list[str], cells: int) -> None:
    n = len(states)
    p = make(n, plen=BS, have=[i for i, s in enumerate(states) if s == "h"])
    p.add_peer_have_all("s")
    for i, s in enumerate(states):
        if s == "0":
            p.set_priority(i, 0)
        elif s == "m":
            p.set_priority(i, 2)  # keep the partial pick below off these pieces
    partial = [i for i, s in enumerate(states) if s == "p"]
    for i in partial:
        p.pick("s", bf(n, [i]), 1)
    got = p.piece_map(cells)
    k = min(cells, n)
    expect = []
    for c in range(k):
        seg = states[c * n // k : (c + 1) * n // k]
        if "m" in seg:
            expect.append(".")
        elif "p" in seg:
            expect.append("+")
        elif "h" in seg:
            expect.append("#")
        else:
            expect.append(" ")
    assert got == "".join(expect)


def test_piece_lost_makes_a_piece_wanted_again() -> None:
    from swarm.core.bitfield import Bitfield as _Bf
    from swarm.core.picker import PiecePicker as _Pp

    have = _Bf(4, full=True)
    p = _Pp(4, 32768, 4 * 32768, have=have)
    theirs = _Bf(4)
    theirs.set(2)
    p.add_peer("x", theirs)
    assert p.is_complete() and p.pick("x", theirs, 4) == []
    p.piece_lost(2)
    p.piece_lost(2)  # idempotent
    assert not p.is_complete() and p.wanted_missing == 1 and not p.have[2]
    assert p.is_interesting("x")
    blocks = p.pick("x", theirs, 4)
    assert blocks and all(b.index == 2 for b in blocks)
