"""Issue 17: a choked peer's allowed-fast request is served only for a first copy.

BEP 6 computes the allowed-fast set from the peer's /24, so on a LAN every
leecher is offered the same pieces; a seed that served them all sent those
pieces once per leecher (about 0.9 of the 1.9 copies of the file the seed
sent in the 24-leecher benchmark).
"""

from swarm.core.seeding import (
    BUSY_SECONDS,
    MIN_QUEUED,
    REASK_DELAY,
    FirstCopies,
    FirstPass,
    uplink_busy,
)

BS = 16384


def test_a_choked_peer_gets_a_piece_only_until_its_first_copy_is_out() -> None:
    fc = FirstCopies(num_pieces=3, piece_length=4 * BS, total_length=2 * 4 * BS + BS)
    assert fc.serve_choked(0)
    for _ in range(4):
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


def test_first_pass_gives_each_piece_to_one_peer_until_all_are_out() -> None:
    fp = FirstPass(3)
    assert fp.may_serve("a", 0) and fp.may_serve("a", 0)  # a owns piece 0
    assert not fp.may_serve("b", 0)  # b is refused: it asks for another piece
    assert fp.may_serve("b", 1)
    fp.announced(1)  # b has it whole (or someone else announced it)
    assert not fp.may_serve("c", 1) and not fp.done
    assert fp.may_serve("c", 2)  # the last piece given: the pass is over
    assert fp.done and fp.may_serve("b", 0) and fp.may_serve("c", 1)


def test_a_choked_or_gone_owner_gives_back_what_it_did_not_announce() -> None:
    fp = FirstPass(4)
    assert fp.may_serve("a", 0) and fp.may_serve("a", 1)
    fp.announced(1)
    fp.release("a")
    assert fp.may_serve("b", 0)  # given back
    assert not fp.may_serve("b", 1)  # announced: out for good


def test_an_announced_piece_nobody_connected_holds_is_served_again() -> None:
    """The peers that announced a piece left (a leecher done and gone, a kill): a peer
    that wants only that part (file selection) must not be refused until the pass ends."""
    fp = FirstPass(4)
    assert fp.may_serve("a", 0)
    fp.announced(0)
    fp.release("a")
    assert not fp.may_serve("b", 0, held_elsewhere=True)  # someone still has it: trade
    assert fp.may_serve("b", 0, held_elsewhere=False)  # nobody does: the seed gives it
    assert not fp.may_serve("c", 0, held_elsewhere=False)  # and b owns it again


def test_request_spread_tells_block_by_block_pieces_from_scattered_blocks() -> None:
    from swarm.core.seeding import RequestSpread

    client = RequestSpread()
    for piece in range(20):  # block after block: a client's way
        for _ in range(16):
            client.note(piece)
    assert client.whole_pieces(16 * BS)
    scattered = RequestSpread()
    for i in range(RequestSpread.GRACE - 1):
        scattered.note(i * 7)
    assert scattered.whole_pieces(16 * BS)  # too soon to tell
    for i in range(RequestSpread.GRACE, 40):
        scattered.note(i * 7)
    assert not scattered.whole_pieces(16 * BS)
    assert scattered.whole_pieces(4 * BS)  # small pieces: a load costs at most 4 blocks
    for i in range(RequestSpread.WINDOW):  # then it asks piece after piece whole: loads again
        scattered.note(1000 + i // 16)
    assert scattered.whole_pieces(16 * BS)


def test_a_block_refused_again_is_refused_after_a_delay_not_at_once() -> None:
    """libtorrent asks again for a rejected block at once: a reject at once each time
    was a loop of one reject per round trip until the owner announced the piece."""
    fp = FirstPass(4)
    assert fp.may_serve("a", 0)
    assert not fp.may_serve("b", 0)
    assert fp.refuse("b", 0, 0) == 0.0  # the first time: at once (swarm leechers go elsewhere)
    assert fp.refuse("b", 0, BS) == 0.0  # another block
    assert fp.refuse("b", 0, 0) == REASK_DELAY  # asked again
    assert fp.refuse("c", 0, 0) == 0.0  # per peer
    fp.release("b")  # gone: its refusals are forgotten
    assert fp.refuse("b", 0, 0) == 0.0


def test_the_pass_refuses_only_while_the_uplink_has_other_work() -> None:
    """Refusing saves a second copy only if the seed has other first copies to send;
    an uplink that would idle sends the second copy for free (a leecher wanting only
    an owned piece stalled behind a seed with nothing else to do)."""
    assert not uplink_busy(0, 0.0)
    assert not uplink_busy(MIN_QUEUED - 1, 0.0)
    assert uplink_busy(MIN_QUEUED, 0.0)
    rate = 10 * MIN_QUEUED / BUSY_SECONDS  # bytes/s: MIN_QUEUED is a tenth of BUSY_SECONDS of it
    assert not uplink_busy(5 * MIN_QUEUED, rate)
    assert uplink_busy(10 * MIN_QUEUED, rate)


def test_request_spread_calls_scattered_only_a_block_per_piece_not_a_client_starting_a_large_piece() -> None:
    """The choker gives no slot to a peer that asks scattered blocks and announces
    nothing (a flood's requester). A client's first 8 requests of one 1 MiB piece (64
    blocks) use an eighth of it: too little for loading whole pieces to pay
    (``whole_pieces``), but no sign of a flood; taken for one, an honest leecher was
    choked at its first requests and never served while others were interested."""
    from swarm.core.seeding import RequestSpread

    starting = RequestSpread()
    for _ in range(8):
        starting.note(28)
    assert not starting.whole_pieces(64 * BS)
    assert not starting.scattered(64 * BS)
    several = RequestSpread()  # a few pieces at a time, a block of each in turn
    for _ in range(6):
        for piece in (3, 9, 14, 20):
            several.note(piece)
    assert not several.scattered(64 * BS)
    flood = RequestSpread()
    for i in range(RequestSpread.GRACE - 1):
        flood.note(i * 7)
    assert not flood.scattered(64 * BS)  # too soon to tell
    for i in range(RequestSpread.GRACE, 40):
        flood.note(i * 7)
    assert flood.scattered(64 * BS) and flood.scattered(2 * BS)
    assert not flood.scattered(BS)  # a piece of one block: every client asks so
