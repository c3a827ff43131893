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
