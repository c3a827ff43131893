"""What we have sent of each piece, and whom that lets us serve while choked. Pure.

Why: BEP 6 derives a peer's allowed-fast set from its /24 address, so on a
LAN every peer is offered the *same* pieces, and a seed that served each
choked newcomer those pieces sent them once per leecher: in a swarm of 24
that was about 0.9 copies of the file on top of the one the swarm needs,
while the seed's uplink is the swarm's scarcest. Once a whole copy of a piece
has left us, the peers can trade it among themselves: a choked peer's request
for it is rejected (BEP 6 lets us), and it asks someone else.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Hashable

from swarm.core.merkle import block_count
from swarm.core.wire import BLOCK_SIZE

Peer = Hashable

#: The counters saturate here (16-bit, in blocks): far beyond any decision made on them.
_CAP = 0xFFFF

#: seconds a first-pass refusal of a block the peer was refused before waits (FirstPass.refuse)
REASK_DELAY = 0.5
#: the first pass refuses only while the seed has this much to send (requests queued, bytes
#: written and not yet sent): seconds at its upload rate, and at least MIN_QUEUED bytes
#: (uplink_busy). Was 0.5 s and 1 MiB of queued requests alone, which took a 24-leecher
#: seed for idle while its uplink was 99 % busy: 0.14 copies of the file went out as
#: second copies of pieces still on their way to their owners.
BUSY_SECONDS = 0.1
MIN_QUEUED = 8 * BLOCK_SIZE
#: after the first pass the seed leaves a piece to its peers once this many of them hold it
#: (FirstPass.decide)
SHARED_BY = 2
#: ...in a swarm of more peers than this: in a smaller one the seed's uplink is a large
#: part of the swarm's, and it serves every request (work-conserving)
SMALL_SWARM = 3
#: ...but serves a peer still asking for it this many seconds after its first refusal
#: (swarm leechers ask a refusing peer again after requests.REFUSED_FOR, 5 s)
PATIENCE = 4.0


def uplink_busy(queued_bytes: int, rate: float) -> bool:
    """Has the seed enough else to send that refusing a request costs it nothing?

    Why: a refusal saves a second copy only if the uplink has other first copies
    to carry meanwhile. When the leechers want only part of the torrent (file
    selection) every piece they want has an owner early and the pass never ends;
    libtorrent leechers then waited for the owners while the seed's uplink sat a
    third idle (3 leechers of half a 48 MiB torrent: 7.3-7.9 s, 6.0 s without
    the pass). A second copy sent by an uplink that would idle is free."""
    return queued_bytes >= max(MIN_QUEUED, rate * BUSY_SECONDS)


class FirstCopies:
    """Blocks sent (or queued to be sent) per piece, two bytes a piece."""

    def __init__(self, num_pieces: int, piece_length: int, total_length: int) -> None:
        self.piece_length = piece_length
        self._last = num_pieces - 1
        self._last_size = total_length - self._last * piece_length if num_pieces else 0
        self._blocks = array("H", bytes(2 * num_pieces))

    def _blocks_in(self, index: int) -> int:
        return block_count(self._last_size if index == self._last else self.piece_length)

    def note(self, index: int, length: int) -> None:
        """A block of ``index`` is on its way to some peer."""
        n = self._blocks[index] + block_count(length)
        self._blocks[index] = n if n < _CAP else _CAP

    def copies(self, index: int) -> float:
        return self._blocks[index] / self._blocks_in(index)

    def serve_choked(self, index: int) -> bool:
        """May a peer we choke have this piece (BEP 6 allowed fast)? Only while its
        first copy has not left us in full."""
        return self._blocks[index] < self._blocks_in(index)


class FirstPass:
    """An initial seed's first pass: each piece goes to one peer until every piece has.

    Why: a seed that serves every request sends the pieces its leechers happen
    to ask for, and a leecher cannot know which pieces the seed is already
    sending to others (they announce a piece only once they have all of it),
    so the seed sent ~1.3 copies of the file where one would do, and the swarm
    waited for the last first copies. Here the first peer given a block of a
    piece owns that piece; until every piece has an owner, another peer asking
    for it is refused (BEP 6 reject: it asks for a piece nobody has instead, or
    gets this one from a peer that announces it). An owner choked or gone gives
    back the pieces it has not announced; a piece anyone announced stays given.
    After the pass, a piece is served while fewer than ``SHARED_BY`` peers hold
    it (``decide``): once all first copies are out the leechers' uplinks dwarf
    the seed's, and its further copies were the copies above one (1.15-1.26 of
    the file in the 24-leecher benchmark).

    libtorrent gives a rejected block back to its picker and, the piece being
    partly requested, asks for the same block again at once: a reject per round
    trip until the owner announces the piece (on loopback tens of thousands a
    second, most of the seed's CPU). So a block refused before is refused
    again only after ``REASK_DELAY`` (``refuse``): a few rejects a second.
    """

    def __init__(self, num_pieces: int) -> None:
        self.num_pieces = num_pieces
        self._owner: dict[int, Peer | None] = {}  # None: announced by some peer
        self.done = num_pieces == 0
        #: the blocks refused to each peer (peer, piece, offset)
        self._refused: set[tuple[Peer, int, int]] = set()
        #: after the pass: when a peer was first refused a piece others hold
        self._shared_since: dict[tuple[Peer, int], float] = {}

    def decide(
        self, peer: Peer, index: int, holders: int, busy: Callable[[], bool], now: float, peers: int
    ) -> bool:
        """Serve a fast-extension peer's request for ``index`` (else a BEP 6 reject)?
        ``holders``: the connected peers that announced the piece; ``busy``: has the
        uplink other work (``uplink_busy``; asked only when it matters); ``peers``:
        how many are connected.

        During the pass: its owner's, or anyone's when the uplink would idle. After
        it: while fewer than ``SHARED_BY`` peers hold the piece, always with at most
        ``SMALL_SWARM`` peers (a lone leecher, a small swarm), and when the peer asks
        for it ``PATIENCE`` seconds after a first refusal (the holders may not be
        serving it). Not work-conserving on purpose: once every piece has left the
        seed, a piece several leechers hold reaches the others as fast through their
        uplinks, and the seed may idle (issue 17: busy until its last piece left it)."""
        if not self.done:
            return self.may_serve(peer, index, holders > 0) or not busy()
        if holders < SHARED_BY or peers <= SMALL_SWARM:
            return True
        since = self._shared_since.setdefault((peer, index), now)
        return now - since >= PATIENCE

    def may_serve(self, peer: Peer, index: int, held_elsewhere: bool = True) -> bool:
        """May ``peer`` have a block of ``index`` now? (It becomes the owner if nobody is.)
        ``held_elsewhere``: a connected peer announced the piece. When none does (they
        left), an announced piece is given again: else a peer that wants only that part
        of the torrent would wait for the whole pass."""
        if self.done:
            return True
        owner = self._owner.get(index, _NOBODY)
        if owner is None and not held_elsewhere:
            self._owner[index] = peer
            return True
        if owner is _NOBODY:
            self._owner[index] = peer
            if len(self._owner) == self.num_pieces:
                self._finish()
            return True
        return owner == peer

    def refuse(self, peer: Peer, index: int, begin: int) -> float:
        """``may_serve`` said no: seconds to wait before the reject. 0 the first time
        ``peer`` is refused this block; ``REASK_DELAY`` when it asks again (its
        picker gave the block straight back: a reject at once would be a loop)."""
        key = (peer, index, begin)
        if key in self._refused:
            return REASK_DELAY
        self._refused.add(key)
        return 0.0

    def _finish(self) -> None:
        self.done = True
        self._owner.clear()
        self._refused.clear()

    def announced(self, index: int) -> None:
        """Some peer has the piece whole: it is out, whoever owned it."""
        if not self.done:
            self._owner[index] = None
            if len(self._owner) == self.num_pieces:
                self._finish()

    def release(self, peer: Peer) -> None:
        """``peer`` was choked or left: its pieces nobody announced go to whoever asks,
        and what was refused to it is forgotten."""
        self._refused = {k for k in self._refused if k[0] != peer}
        if self.done:
            self._shared_since = {k: t for k, t in self._shared_since.items() if k[0] != peer}
            return
        for i in [i for i, p in self._owner.items() if p == peer and p is not None]:
            del self._owner[i]


_NOBODY = object()


class RequestSpread:
    """How a peer's requests spread over pieces: whether loading and checking a whole
    piece into the read cache for its request pays.

    Why: to serve a block the seed loads its piece (SHA-1 checked) into the cache,
    which pays when the peer goes on to ask for the piece's other blocks, as
    clients do. A peer asking one block of each of many pieces made the seed read
    and hash 16-64x what it sent (a flood's requesters doubled a seed's CPU); once
    it shows that pattern it is served the blocks alone. A request counts as a
    move to another piece unless its piece is among the last few asked (clients
    interleave a few pieces); the counts halve now and then, so the pattern is recent.
    """

    __slots__ = ("blocks", "moves", "_recent")

    #: Requests served the usual way before the pattern counts.
    GRACE = 8
    #: Whole pieces are loaded while the peer asks at least 1/USE of the blocks they hold.
    USE = 4
    RECENT = 4
    #: Fewer blocks per piece moved to than this is scattered (``scattered``).
    SCATTERED_BLOCKS = 2
    WINDOW = 256

    def __init__(self) -> None:
        self.blocks = self.moves = 0
        self._recent: list[int] = []

    def note(self, index: int) -> None:
        """The peer asked for a block of piece ``index``."""
        self.blocks += 1
        recent = self._recent
        if index not in recent:
            self.moves += 1
            recent.append(index)
            if len(recent) > self.RECENT:
                del recent[0]
        if self.blocks >= self.WINDOW:
            self.blocks //= 2
            self.moves //= 2

    def whole_pieces(self, piece_length: int) -> bool:
        """Load whole pieces (of ``piece_length`` bytes) for this peer's requests?"""
        return self.blocks < self.GRACE or self.USE * self.blocks >= self.moves * block_count(piece_length)

    def scattered(self, piece_length: int) -> bool:
        """Does the peer ask about one block per piece it moves to (a flood's requester)?

        Not ``not whole_pieces``: a client starting on a few large pieces uses a small
        part of each for a while, and the choker gives no slot to a peer found scattered
        (and announcing nothing) while others want data. Pieces of one block are asked
        one block each by everyone: never scattered."""
        per_move = min(self.SCATTERED_BLOCKS, block_count(piece_length))
        return self.blocks >= self.GRACE and self.blocks < per_move * self.moves
