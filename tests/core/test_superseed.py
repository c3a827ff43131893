"""BEP 16 super-seeding decisions (issue 17): one piece per peer, each first copy once."""

import random

from swarm.core.superseed import SuperSeeder


def test_each_peer_is_shown_a_different_rarest_piece() -> None:
    s = SuperSeeder(8, rng=random.Random(1))
    avail = [3, 0, 0, 0, 0, 2, 2, 2]
    shown = [s.next_piece(p, lambda i: False, avail.__getitem__) for p in "abcd"]
    assert sorted(shown) == [1, 2, 3, 4]  # the four pieces nobody has, one each
    assert s.next_piece("a", lambda i: False, avail.__getitem__) is None  # one at a time
    assert s.may_request("a", shown[0]) and not s.may_request("a", shown[1])


def test_a_peer_gets_its_next_piece_when_its_piece_is_announced() -> None:
    s = SuperSeeder(4, rng=random.Random(2))
    zero = [0, 0, 0, 0]
    a = s.next_piece("a", lambda i: False, zero.__getitem__)
    b = s.next_piece("b", lambda i: False, zero.__getitem__)
    assert a is not None and b is not None and a != b
    other = next(i for i in range(4) if i not in (a, b))
    assert s.on_have("c", other) == []  # a piece nobody was given: nothing due
    assert s.on_have("b", a) == ["a"]  # b has a's piece: shared, a may have another
    assert s.pending("a") is None and s.pending("b") == b
    assert s.on_have("b", b) == ["b"]  # b finished its own
    has_a = {a}
    nxt = s.next_piece("a", has_a.__contains__, zero.__getitem__)
    assert nxt not in (None, a)
    assert s.revealed("a") == {a, nxt}


def test_a_peer_that_leaves_frees_its_piece() -> None:
    s = SuperSeeder(2, rng=random.Random(3))
    zero = [0, 0]
    a = s.next_piece("a", lambda i: False, zero.__getitem__)
    s.remove_peer("a")
    assert s.next_piece("b", lambda i: False, zero.__getitem__) in (0, 1)
    assert s.next_piece("c", lambda i: False, zero.__getitem__) is not None
    assert not s.revealed("a") and a is not None


def test_nothing_to_show_a_peer_that_has_everything() -> None:
    s = SuperSeeder(3)
    assert s.next_piece("a", lambda i: True, lambda i: 0) is None
