"""Issue 17: a choked peer's allowed-fast request is served only for a first copy.

BEP 6 computes the allowed-fast set from the peer's /24, so on a LAN every
leecher is offered the same pieces; a seed that served them all sent those
pieces once per leecher (about 0.9 of the 1.9 copies of the file the seed
sent in the 24-leecher benchmark).
"""

from swarm.core.seeding import (
    BUSY_SECONDS,
    MIN_QUEUED,
    PATIENCE,
    REASK_DELAY,
    SHARED_BY,
    SMALL_SWARM,
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


def _passed(n: int) -> FirstPass:
    """A pass over ``n`` pieces, over: each piece given to peer "a"."""
    fp = FirstPass(n)
    for i in range(n):
        assert fp.may_serve("a", i)
    assert fp.done
    return fp


def _idle() -> bool:
    return False


def _busy() -> bool:
    return True


def test_after_the_pass_a_piece_several_peers_hold_is_left_to_them() -> None:
    """Issue 17: after its first pass the seed served every request at full rate until
    the last leecher was done (1.15-1.26 copies in the 24-leecher benchmark, where the
    leechers' 24 uplinks dwarf the seed's). A piece SHARED_BY peers hold is theirs to
    trade, even when the seed's uplink would idle (it may, once every piece has left it)."""
    fp = _passed(4)
    peers = SMALL_SWARM + 1
    assert not fp.decide("c", 0, holders=SHARED_BY, busy=_idle, now=0.0, peers=peers)
    assert not fp.decide("c", 0, holders=20, busy=_busy, now=0.0, peers=24)
    assert fp.decide("c", 1, holders=SHARED_BY - 1, busy=_busy, now=0.0, peers=peers)  # still rare


def test_after_the_pass_a_small_swarm_is_served_whatever_its_peers_hold() -> None:
    """With a few leechers the seed's uplink is a large part of the swarm's: it stays
    work-conserving (a third leecher gets a piece the other two hold from it too)."""
    fp = _passed(4)
    assert fp.decide("c", 0, holders=SMALL_SWARM - 1, busy=_busy, now=0.0, peers=SMALL_SWARM)


def test_after_the_pass_a_lone_leecher_or_a_small_swarm_is_always_served() -> None:
    """Work-conserving where the seed's uplink is a large part of the swarm's: a piece no
    other peer holds (a lone leecher: the one-link case) or only one or two do."""
    fp = _passed(4)
    for holders in range(SHARED_BY):
        for busy in (_idle, _busy):
            assert fp.decide("c", 0, holders=holders, busy=busy, now=0.0, peers=24)


def test_after_the_pass_a_peer_that_finds_no_other_source_is_served_in_the_end() -> None:
    """The holders the seed knows of may not serve this peer (not connected to it, or
    choking it): a peer that still asks PATIENCE seconds after its first refusal gets
    the piece, every block of it; others are still refused."""
    fp = _passed(4)
    assert not fp.decide("c", 0, holders=5, busy=_busy, now=10.0, peers=24)
    assert not fp.decide("c", 0, holders=5, busy=_busy, now=10.0 + PATIENCE - 0.1, peers=24)
    assert fp.decide("c", 0, holders=5, busy=_busy, now=10.0 + PATIENCE, peers=24)
    assert fp.decide("c", 0, holders=5, busy=_busy, now=10.0 + PATIENCE + 0.1, peers=24)  # next block
    assert not fp.decide("d", 0, holders=5, busy=_busy, now=10.0 + PATIENCE, peers=24)
    assert not fp.decide("c", 1, holders=5, busy=_busy, now=10.0 + PATIENCE, peers=24)  # per piece
    fp.release("c")  # choked or gone: its refusals are forgotten
    assert not fp.decide("c", 0, holders=5, busy=_busy, now=100.0, peers=24)


def test_during_the_pass_decide_is_the_pass_and_the_uplink() -> None:
    fp = FirstPass(4)
    assert fp.decide("a", 0, holders=0, busy=_busy, now=0.0, peers=2)  # a owns piece 0
    assert not fp.decide("b", 0, holders=0, busy=_busy, now=0.0, peers=2)  # another's first copy
    assert fp.decide("b", 0, holders=0, busy=_idle, now=0.0, peers=2)  # the uplink would idle: free
    fp.announced(1)
    assert not fp.decide("b", 1, holders=1, busy=_busy, now=0.0, peers=2)  # out: trade it
    assert fp.decide("b", 1, holders=0, busy=_busy, now=0.0, peers=2)  # its holders left


def test_refusals_after_the_pass_are_forgotten_with_the_peer() -> None:
    """A re-asked block is refused after REASK_DELAY after the pass too; what the pass
    remembers of a peer goes when it does (no growth over a long seeding)."""
    fp = _passed(2)
    assert fp.refuse("c", 0, 0) == 0.0
    assert fp.refuse("c", 0, 0) == REASK_DELAY
    fp.release("c")
    assert fp.refuse("c", 0, 0) == 0.0


def test_a_tenth_of_a_second_of_queued_uploads_is_a_busy_uplink() -> None:
    """Issue 17: in the 24-leecher benchmark each leecher keeps about a second of its
    share of the seed's rate queued there (6 blocks), and refusals thin the queue: at
    0.5 s the pass judged the seed's uplink idle while it was 99 % busy (the kernel's
    send buffers hold more), and served 0.14 copies of the file as second copies.
    The queue alone need only say the uplink will not idle: 0.1 s of it."""
    rate = 2.5e6  # 20 Mbit/s
    assert uplink_busy(int(0.3 * rate), rate)
    assert uplink_busy(int(0.1 * rate), rate)
    assert not uplink_busy(0, rate)
    assert not uplink_busy(MIN_QUEUED - 1, 0.0)
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
