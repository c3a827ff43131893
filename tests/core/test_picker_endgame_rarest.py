"""Issue 17: rarest first from the second piece on, and an endgame that wastes little."""

import random

from swarm.core.bitfield import Bitfield
from swarm.core.picker import ENDGAME_QUEUE, ENDGAME_REQUESTERS, PiecePicker

BS = 16384


def bf(n: int, idx: object) -> Bitfield:
    b = Bitfield(n)
    for i in idx:  # type: ignore[attr-defined]
        b.set(i)
    return b


def swarm_with_a_rare_piece(seed: int, have: list[int]) -> tuple[PiecePicker, Bitfield]:
    """16 pieces; piece 3 is held by one peer ("r"), every other piece by five."""
    n = 16
    p = PiecePicker(n, 4 * BS, n * 4 * BS, have=bf(n, have), rng=random.Random(seed))
    full = bf(n, range(n))
    p.add_peer("r", full)
    for k in "abcd":
        p.add_peer(k, bf(n, [i for i in range(n) if i != 3]))
    return p, full


def test_rarest_first_once_one_piece_is_complete() -> None:
    for seed in range(20):
        p, full = swarm_with_a_rare_piece(seed, have=[15])
        assert {b.index for b in p.pick("r", full, 4)} == {3}, seed


def test_the_first_piece_is_random() -> None:
    firsts = set()
    for seed in range(20):
        p, full = swarm_with_a_rare_piece(seed, have=[])
        firsts |= {b.index for b in p.pick("r", full, 4)}
    assert len(firsts) > 1  # not always the rarest: the first piece only has to come soon


def test_endgame_duplicates_only_for_a_drained_pipeline() -> None:
    n = 2
    p = PiecePicker(n, 16 * BS, n * 16 * BS, have=bf(n, [0]), rng=random.Random(1))
    for k in "abc":
        p.add_peer_have_all(k)
    a = p.pick("a", None, 100)
    assert len(a) == 16 and p.endgame
    b = p.pick("b", None, 100)
    assert len(b) == ENDGAME_QUEUE  # not the 16 it could take: each second copy is waste
    assert set(b) <= set(a)
    assert p.pick("b", None, 100) == []  # its pipeline is full enough
    p.on_block("b", b[0].index, b[0].begin)
    more = p.pick("b", None, 100)
    assert len(more) == 1 and more[0] not in b
    # at most ENDGAME_REQUESTERS per block: c gets only blocks b was not asked for
    c = p.pick("c", None, 100)
    assert ENDGAME_REQUESTERS == 2
    assert len(c) == ENDGAME_QUEUE and not set(c) & (set(b) | set(more))


def test_a_seed_is_asked_for_pieces_no_other_peer_has_before_others_partials() -> None:
    """The seed's uplink is the swarm's scarcest: blocks of a piece another leecher
    can give us (one we started from it) are not asked of the seed while it has
    pieces nobody else has (issue 17: the seed sent ~1.9 copies of the file)."""
    n = 16
    for seed in range(10):
        p = PiecePicker(n, 4 * BS, n * 4 * BS, have=bf(n, [15]), rng=random.Random(seed))
        p.add_peer_have_all("seed")
        a_has = bf(n, [0])
        p.add_peer("a", a_has)
        assert {b.index for b in p.pick("a", a_has, 2)} == {0}  # piece 0 in progress from "a"
        from_seed = p.pick("seed", None, 8)
        assert len(from_seed) == 8
        assert 0 not in {b.index for b in from_seed}, seed


def test_a_seed_still_completes_partials_when_every_piece_is_elsewhere_too() -> None:
    n = 4
    p = PiecePicker(n, 4 * BS, n * 4 * BS, have=bf(n, [3]), rng=random.Random(1))
    p.add_peer_have_all("seed")
    a_has = bf(n, [0, 1, 2])
    p.add_peer("a", a_has)
    first = p.pick("a", a_has, 2)
    assert len({b.index for b in first}) == 1
    started = first[0].index
    from_seed = p.pick("seed", None, 2)
    # every missing piece is also at "a": finishing the started one comes first, as before
    assert {b.index for b in from_seed} == {started}


def test_endgame_leaves_blocks_to_a_peer_that_is_delivering() -> None:
    """Issue 17: with every peer delivering, each endgame duplicate arrived second and
    was waste (2-3 % of the bytes of an 8-leecher swarm); a duplicate is worth it only
    when the block's requester has gone quiet."""
    n = 2
    p = PiecePicker(n, 16 * BS, n * 16 * BS, have=bf(n, [0]), rng=random.Random(1))
    for k in "ab":
        p.add_peer_have_all(k)
    a = p.pick("a", None, 100)
    assert len(a) == 16 and p.endgame
    p.set_delivering("a", True)
    assert p.pick("b", None, 100) == []  # a is sending: nothing to duplicate
    p.set_delivering("a", False)  # a went quiet
    b = p.pick("b", None, 100)
    assert len(b) == ENDGAME_QUEUE and set(b) <= set(a)
