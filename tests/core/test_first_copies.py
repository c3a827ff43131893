"""Issue 17: a choked peer's allowed-fast request is served only for a first copy.

BEP 6 computes the allowed-fast set from the peer's /24, so on a LAN every
leecher is offered the same pieces; a seed that served them all sent those
pieces once per leecher (about 0.9 of the 1.9 copies of the file the seed
sent in the 24-leecher benchmark).
"""

from swarm.core.seeding import FirstCopies

BS = 16384


def test_a_choked_peer_gets_a_piece_only_until_its_first_copy_is_out() -> None:
    fc = FirstCopies(num_pieces=3, piece_length=4 * BS, total_length=2 * 4 * BS + BS)
    assert fc.serve_choked(0)
    for b in range(4):
        fc.note(0, BS)
    assert not fc.serve_choked(0)  # a whole copy has left: the others trade it
    assert fc.serve_choked(1)
    fc.note(2, BS)  # the short last piece: one block is a whole copy
    assert not fc.serve_choked(2)


def test_copies_count_bytes_and_saturate() -> None:
    fc = FirstCopies(num_pieces=1, piece_length=2 * BS, total_length=2 * BS)
    fc.note(0, BS)
    assert fc.copies(0) == 0.5 and fc.serve_choked(0)
    for _ in range(200_000):
        fc.note(0, BS)
    assert fc.copies(0) > 1000  # counted up to a cap, never wrapping around
    assert not fc.serve_choked(0)
