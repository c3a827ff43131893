"""Which blocks to request from which peer: pure and cheap per call.

Order of a pick (after libtorrent and BitTorrent 4.x):

a. blocks of pieces already in progress (the peer's own first, then others'),
   so pieces complete and can be hashed and shared soon; from a seed, while
   non-seed peers are about, only those no other peer has until no such piece
   is left (the seed's uplink is the swarm's scarcest: it should send pieces
   nobody else can, not second copies);
b. until we have ``RANDOM_FIRST`` piece, a random piece: rarest first would
   send every newcomer after the same few pieces;
c. otherwise the highest priority, then the rarest (fewest peers), random
   among equals; with a sequential window, pieces in order inside it first
   (a piece of higher priority outside the window still goes first);
d. endgame: when no unstarted wanted piece is left and this peer has nothing
   free to fetch, blocks already requested from others (at most
   ``ENDGAME_REQUESTERS`` requesters per block, and only while the peer has
   fewer than ``ENDGAME_QUEUE`` requests in flight), cancelled on arrival;
   never blocks requested from a peer the shell says is delivering
   (``set_delivering``): their copy would arrive second.

Unstarted candidate pieces live in buckets keyed by (priority, availability)
with a position index, so an availability change moves one piece in O(1) and
picking a new piece looks at the best bucket first instead of scanning every
piece. Peers that have everything are counted (``seeds``), not added per piece.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from typing import NamedTuple

from swarm.core.bitfield import Bitfield
from swarm.errors import ProtocolError

#: Pieces fetched at random before switching to rarest first: only the first,
#: so that it completes soon and we have something to trade; after that the
#: swarm's rarest pieces (issue 17: rarest from the first piece on).
RANDOM_FIRST = 1
#: Most peers one block is requested from at a time in endgame.
ENDGAME_REQUESTERS = 2
#: Endgame duplicates go only to a peer with fewer requests than this in flight
#: (libtorrent: one busy block at a time): each duplicate that arrives second is
#: waste, and a deep pipeline of them was ~5 % of the bytes of a swarm.
ENDGAME_QUEUE = 4

_OPEN = 0
_REQUESTED = 1
_RECEIVED = 2

Peer = Hashable


class Block(NamedTuple):
    index: int  # type: ignore[assignment]  # shadows tuple.index, as BEP 3 names it
    begin: int
    length: int


#: Block construction without the NamedTuple's Python-level __new__ frame
_new_block = tuple.__new__


class _Partial:
    """Download state of one piece in progress."""

    __slots__ = ("contributors", "first_open", "index", "n_open", "n_received", "reqs", "state")

    def __init__(self, index: int, nblocks: int) -> None:
        self.index = index
        self.state = bytearray(nblocks)
        #: block number -> peers it is requested from (only blocks in _REQUESTED)
        self.reqs: dict[int, list[Peer]] = {}
        self.n_open = nblocks
        self.n_received = 0
        self.first_open = 0
        self.contributors: set[Peer] = set()


class PiecePicker:
    """Availability, priorities and in-flight blocks of one torrent."""

    def __init__(
        self,
        num_pieces: int,
        piece_length: int,
        total_length: int,
        *,
        block_size: int = 16384,
        have: Bitfield | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if piece_length <= 0 or block_size <= 0 or total_length < 0 or num_pieces < 0:
            raise ValueError("bad piece geometry")
        if num_pieces != -(-total_length // piece_length):
            raise ValueError("num_pieces does not match total_length / piece_length")
        if have is not None and have.size != num_pieces:
            raise ValueError("have bitfield of the wrong size")
        self.num_pieces = num_pieces
        self.piece_length = piece_length
        self.total_length = total_length
        self.block_size = block_size
        self._last = num_pieces - 1
        self._last_size = total_length - self._last * piece_length if num_pieces else 0
        self._rng = rng if rng is not None else random.Random()
        self._have = have.copy() if have is not None else Bitfield(num_pieces)
        self._prio = [1] * num_pieces
        self._avail = [0] * num_pieces  # excluding seeds
        self.seeds = 0
        self._peers: dict[Peer, Bitfield | None] = {}  # None: has everything
        self._interest: dict[Peer, int] = {}  # wanted missing pieces each peer has
        #: one byte per piece mirroring _have: indexing a bytearray is far cheaper
        self._hv = bytearray(num_pieces)
        for i in self._have:
            self._hv[i] = 1
        #: one byte per piece, 1 while it is wanted and missing: lets piece_map jump
        #: over unwanted pieces at C speed (a --files download may skip most of them)
        self._wm = bytearray(b"\x01") * num_pieces
        for i in self._have:
            self._wm[i] = 0
        self._wanted_missing = num_pieces - self._have.count
        # candidate buckets: unstarted, wanted, missing pieces; while _dirty
        # only _pos >= 0 (candidate or not) is kept and buckets are stale
        self._dirty = True
        self._buckets: dict[tuple[int, int], list[int]] = {}
        self._pos = [-1] * num_pieces
        self._num_candidates = 0
        self._keys: list[tuple[int, int]] | None = None  # sorted best first, lazily
        # pieces in progress
        self._partials: dict[int, _Partial] = {}
        self._open: dict[int, None] = {}  # partial pieces with open blocks, oldest first
        # requests
        self._requests: dict[Peer, dict[Block, None]] = {}
        self._peer_pieces: dict[Peer, dict[int, int]] = {}
        self._in_flight = 0
        # sequential
        self._sequential = False
        self._urgent = False  # some piece has priority > 1: order partial pieces too
        self._window = 1
        self._seq_cursor = 0
        # endgame scans are skipped for a peer while nothing that could give
        # it a block has changed (they would find nothing again)
        self._eg_gen = 0
        self._eg_memo: dict[Peer, tuple[int, int]] = {}
        #: peers sending us blocks right now: endgame does not duplicate their blocks
        self._delivering: set[Peer] = set()
        for i in range(num_pieces):
            if not self._hv[i]:
                self._bucket_add(i)

    # ------------------------------------------------------------ geometry

    def piece_size(self, index: int) -> int:
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def blocks_in(self, index: int) -> int:
        return -(-self.piece_size(index) // self.block_size)

    def _block(self, index: int, b: int) -> Block:
        bs = self.block_size
        begin = b * bs
        left = (self._last_size if index == self._last else self.piece_length) - begin
        return Block(index, begin, left if left < bs else bs)

    # ------------------------------------------------------------ buckets

    def _bucket_add(self, i: int) -> None:
        prio = self._prio[i]
        if prio <= 0:
            return
        self._num_candidates += 1
        if self._dirty:
            self._pos[i] = 0  # a candidate; placed by the next rebuild
            return
        key = (prio, self._avail[i])
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = []
            self._keys = None
        self._pos[i] = len(bucket)
        bucket.append(i)

    def _bucket_remove(self, i: int) -> None:
        pos = self._pos[i]
        if pos < 0:
            return
        self._num_candidates -= 1
        if self._dirty:
            self._pos[i] = -1
            return
        key = (self._prio[i], self._avail[i])
        bucket = self._buckets[key]
        last = bucket.pop()
        if last != i:
            bucket[pos] = last
            self._pos[last] = pos
        self._pos[i] = -1
        if not bucket:
            del self._buckets[key]
            self._keys = None

    def _rebuild(self) -> None:
        """Put every candidate (``_pos >= 0``) in the bucket of its current key."""
        pos = self._pos
        prio = self._prio
        avail = self._avail
        buckets: dict[tuple[int, int], list[int]] = {}
        for i in range(self.num_pieces):
            if pos[i] >= 0:
                key = (prio[i], avail[i])
                bucket = buckets.get(key)
                if bucket is None:
                    bucket = buckets[key] = []
                pos[i] = len(bucket)
                bucket.append(i)
        self._buckets = buckets
        self._keys = None
        self._dirty = False

    def _sorted_keys(self) -> list[tuple[int, int]]:
        keys = self._keys
        if keys is None:
            keys = self._keys = sorted(self._buckets, key=lambda k: (-k[0], k[1]))
        return keys

    def _avail_change(self, i: int, delta: int) -> None:
        if self._pos[i] >= 0 and not self._dirty:
            self._bucket_remove(i)
            self._avail[i] += delta
            self._bucket_add(i)
        else:
            self._avail[i] += delta

    def _wanted(self, i: int) -> bool:
        return self._prio[i] > 0 and not self._hv[i]

    # ------------------------------------------------------------ peers

    def add_peer(self, peer: Peer, bitfield: Bitfield) -> None:
        """A peer's bitfield (BEP 3) or have-none (BEP 6, an empty one); replaces any earlier."""
        self._eg_gen += 1
        if bitfield.size != self.num_pieces:
            raise ProtocolError("bitfield of the wrong size")
        if peer in self._peers:
            self._forget_availability(peer)
        if self.num_pieces and bitfield.all():
            self._add_seed(peer)
            return
        bf = bitfield.copy()
        self._peers[peer] = bf
        self._interest[peer] = self._count_in(bf, 1)

    def add_peer_have_all(self, peer: Peer) -> None:
        """BEP 6 have-all: one seed more, without touching every piece."""
        self._eg_gen += 1
        if peer in self._peers:
            self._forget_availability(peer)
        self._add_seed(peer)

    def _add_seed(self, peer: Peer) -> None:
        self._peers[peer] = None
        self._interest[peer] = -1
        self.seeds += 1

    def peer_have(self, peer: Peer, index: int) -> None:
        """A ``have`` message; an index out of range is the peer's protocol error."""
        if not 0 <= index < self.num_pieces:
            raise ProtocolError(f"have for piece {index} of {self.num_pieces}")
        if peer not in self._peers:
            self._peers[peer] = Bitfield(self.num_pieces)
            self._interest[peer] = 0
        bf = self._peers[peer]
        if bf is None or not bf.set(index):
            return
        self._eg_gen += 1
        self._avail_change(index, 1)
        if self._wanted(index):
            self._interest[peer] += 1

    def _forget_availability(self, peer: Peer) -> None:
        bf = self._peers.pop(peer, None)
        self._interest.pop(peer, None)
        if bf is None:
            self.seeds -= 1
            return
        self._count_in(bf, -1)

    def _count_in(self, bf: Bitfield, delta: int) -> int:
        """Add or remove a whole bitfield's availability; returns its wanted missing pieces.

        Moving each piece between buckets costs more than rebuilding them all
        once a bitfield covers a good part of the torrent; the rebuild waits
        for the next pick, so a burst of connecting peers pays for one.
        """
        hv = self._hv
        prio = self._prio
        wanted = 0
        if bf.count * 4 < self.num_pieces:
            for i in bf:
                self._avail_change(i, delta)
                if prio[i] > 0 and not hv[i]:
                    wanted += 1
            return wanted
        avail = self._avail
        for i in bf:
            avail[i] += delta
            if prio[i] > 0 and not hv[i]:
                wanted += 1
        self._dirty = True
        return wanted

    def remove_peer(self, peer: Peer) -> None:
        """A peer left: its availability goes, its requests return to the pool."""
        if peer in self._peers:
            self._forget_availability(peer)
        self.cancel_requests(peer)
        self._requests.pop(peer, None)
        self._peer_pieces.pop(peer, None)
        self._eg_memo.pop(peer, None)
        self._delivering.discard(peer)

    def set_delivering(self, peer: Peer, delivering: bool) -> None:
        """Is ``peer`` sending us blocks (the shell decides, from when its last came)?"""
        if delivering == (peer in self._delivering):
            return
        if delivering:
            self._delivering.add(peer)
        else:
            self._delivering.discard(peer)
        self._eg_gen += 1

    def leechers_about(self) -> bool:
        """Is some peer not a seed (it may want what a seed sends us)?"""
        return len(self._peers) > self.seeds

    def availability(self, index: int) -> int:
        return self._avail[index] + self.seeds

    def is_interesting(self, peer: Peer) -> bool:
        """Does this peer have a wanted piece we lack (should we be interested)?"""
        n = self._interest.get(peer, 0)
        return self._wanted_missing > 0 if n < 0 else n > 0

    # ------------------------------------------------------------ wanted

    def set_priority(self, index: int, prio: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        if prio < 0:
            raise ValueError("negative priority")
        old = self._prio[index]
        if old == prio:
            return
        self._eg_gen += 1
        if prio > 1:
            self._urgent = True
        candidate = self._pos[index] >= 0
        if candidate:
            self._bucket_remove(index)
        self._prio[index] = prio
        if not self._hv[index] and (old > 0) != (prio > 0):
            delta = 1 if prio > 0 else -1
            self._wm[index] = 1 if prio > 0 else 0
            self._wanted_missing += delta
            for peer, bf in self._peers.items():
                if bf is not None and bf[index]:
                    self._interest[peer] += delta
            if prio > 0 and index < self._seq_cursor:
                self._seq_cursor = index
        if prio > 0 and not self._hv[index] and index not in self._partials:
            self._bucket_add(index)

    def set_priorities(self, prios: Iterable[int]) -> None:
        prios = list(prios)
        if len(prios) != self.num_pieces:
            raise ValueError("one priority per piece")
        for i, p in enumerate(prios):
            self.set_priority(i, p)

    def priority(self, index: int) -> int:
        return self._prio[index]

    def set_sequential(self, enabled: bool, window_bytes: int = 16 * 1024 * 1024) -> None:
        """Fetch pieces in order within ``window_bytes`` of the first missing one."""
        self._sequential = enabled
        self._window = max(1, window_bytes // self.piece_length)
        self._seq_cursor = 0

    # ------------------------------------------------------------ picking

    def pick(self, peer: Peer, peer_has: Bitfield | None, count: int) -> list[Block]:
        """Up to ``count`` blocks to request from ``peer`` (``peer_has`` None: it has all)."""
        out: list[Block] = []
        if count <= 0:
            return out
        if peer_has is not None and peer_has.size != self.num_pieces:
            raise ValueError("peer bitfield of the wrong size")
        reqs = self._requests.get(peer)
        if reqs is None:
            reqs = self._requests[peer] = {}
        mine = self._peer_pieces.get(peer)
        if mine is None:
            mine = self._peer_pieces[peer] = {}
        prio = self._prio
        open_ = self._open
        # a seed while other peers are about: its uplink is the swarm's scarcest, so
        # pieces some other peer has (started from it) are asked of the seed only
        # once no piece is left that the seed alone has (``_avail`` excludes seeds)
        spare_seed = peer in self._peers and self._peers[peer] is None and self.leechers_about()
        deferred: list[int] = []
        # (a) pieces in progress: ours first, then any
        if open_:
            count = self._take_pieces(peer, [i for i in mine if i in open_], peer_has, reqs, mine, count, out)
            if not count:
                return out
            if open_:
                pending = list(open_)
                if self._urgent:
                    pending.sort(key=prio.__getitem__, reverse=True)
                if spare_seed:
                    avail = self._avail
                    deferred = [i for i in pending if avail[i]]
                    pending = [i for i in pending if not avail[i]]
                count = self._take_pieces(peer, pending, peer_has, reqs, mine, count, out)
                if not count:
                    return out
        # (b, c) new pieces
        while count and self._num_candidates:
            new = self._pick_new(peer_has)
            if new is None:
                break
            if deferred and self._avail[new]:
                # nothing is left that only the seed has: finish what is started first
                count = self._take_pieces(peer, deferred, peer_has, reqs, mine, count, out)
                deferred = []
                continue
            self._bucket_remove(new)
            part = self._partials[new] = _Partial(new, self.blocks_in(new))
            open_[new] = None
            count = self._take_open(peer, reqs, mine, part, count, out)
        if deferred and count:
            count = self._take_pieces(peer, deferred, peer_has, reqs, mine, count, out)
        # (d) endgame, only for a nearly drained pipeline
        if count and not self._num_candidates:
            count = min(count, ENDGAME_QUEUE - len(reqs))
        if count > 0 and not self._num_candidates:
            memo = (self._eg_gen, -1 if peer_has is None else hash(peer_has))
            if self._eg_memo.get(peer) != memo and not self._take_endgame(
                peer, peer_has, reqs, mine, count, out
            ):
                self._eg_memo[peer] = memo
        return out

    def _take_pieces(
        self,
        peer: Peer,
        indexes: list[int],
        peer_has: Bitfield | None,
        reqs: dict[Block, None],
        mine: dict[int, int],
        count: int,
        out: list[Block],
    ) -> int:
        """Open blocks of these pieces in progress (wanted ones the peer has), in order."""
        prio = self._prio
        open_ = self._open
        partials = self._partials
        for i in indexes:
            if i in open_ and prio[i] > 0 and (peer_has is None or peer_has[i]):
                count = self._take_open(peer, reqs, mine, partials[i], count, out)
                if not count:
                    break
        return count

    def _take_open(
        self,
        peer: Peer,
        reqs: dict[Block, None],
        mine: dict[int, int],
        part: _Partial,
        count: int,
        out: list[Block],
    ) -> int:
        state = part.state
        n = len(state)
        b = part.first_open
        taken = 0
        index = part.index
        bs = self.block_size
        size = self._last_size if index == self._last else self.piece_length
        reqs_of = part.reqs
        while b < n and count:
            if state[b] == _OPEN:
                state[b] = _REQUESTED
                reqs_of[b] = [peer]
                begin = b * bs
                left = size - begin
                blk = _new_block(Block, (index, begin, left if left < bs else bs))
                reqs[blk] = None
                out.append(blk)
                taken += 1
                count -= 1
            b += 1
        part.first_open = b
        if taken:
            part.n_open -= taken
            self._in_flight += taken
            mine[part.index] = mine.get(part.index, 0) + taken
        if part.n_open == 0:
            self._open.pop(part.index, None)
        return count

    def _take_endgame(
        self,
        peer: Peer,
        peer_has: Bitfield | None,
        reqs: dict[Block, None],
        mine: dict[int, int],
        count: int,
        out: list[Block],
    ) -> bool:
        """Duplicate requests, least requested blocks first; True if ``count`` were found."""
        prio = self._prio
        delivering = self._delivering
        for level in range(1, ENDGAME_REQUESTERS):
            for i, part in self._partials.items():
                if prio[i] <= 0 or (peer_has is not None and not peer_has[i]):
                    continue
                for b, who in part.reqs.items():
                    if len(who) == level and peer not in who and not delivering.intersection(who):
                        who.append(peer)
                        blk = self._block(i, b)
                        reqs[blk] = None
                        out.append(blk)
                        mine[i] = mine.get(i, 0) + 1
                        self._in_flight += 1
                        count -= 1
                        if not count:
                            return True
        return False

    def _pick_new(self, peer_has: Bitfield | None) -> int | None:
        if self._dirty:
            self._rebuild()
        if self._sequential:
            i = self._pick_sequential(peer_has)
            if i is not None:
                return i
        elif self._have.count < RANDOM_FIRST:
            i = self._pick_random(peer_has)
            if i is not None:
                return i
        return self._pick_rarest(peer_has)

    def _pick_sequential(self, peer_has: Bitfield | None) -> int | None:
        """The first piece in the read-ahead window; more urgent pieces elsewhere go first."""
        n = self.num_pieces
        c = self._seq_cursor
        hv = self._hv
        prio = self._prio
        while c < n and (hv[c] or prio[c] <= 0):
            c += 1
        self._seq_cursor = c
        pos = self._pos
        top = self._sorted_keys()[0][0]
        for i in range(c, min(n, c + self._window)):
            if pos[i] >= 0 and prio[i] >= top and (peer_has is None or peer_has[i]):
                return i
        return None

    def _pick_random(self, peer_has: Bitfield | None) -> int | None:
        keys = self._sorted_keys()
        top = keys[0][0]
        buckets = [self._buckets[k] for k in keys if k[0] == top]
        total = sum(len(b) for b in buckets)
        rng = self._rng
        for _ in range(32):
            r = rng.randrange(total)
            for bucket in buckets:
                if r < len(bucket):
                    i = bucket[r]
                    if peer_has is None or peer_has[i]:
                        return i
                    break
                r -= len(bucket)
        return None

    def _pick_rarest(self, peer_has: Bitfield | None) -> int | None:
        rng = self._rng
        if peer_has is None or peer_has.count * 8 >= self._num_candidates:
            for key in self._sorted_keys():
                bucket = self._buckets[key]
                start = rng.randrange(len(bucket))
                if peer_has is None:
                    return bucket[start]
                for j in range(start, len(bucket)):
                    if peer_has[bucket[j]]:
                        return bucket[j]
                for j in range(start):
                    if peer_has[bucket[j]]:
                        return bucket[j]
            return None
        # a peer with few pieces: look at its pieces, not at every candidate
        best: int | None = None
        best_key = (0, 0)
        ties = 0
        pos = self._pos
        prio = self._prio
        avail = self._avail
        for i in peer_has:
            if pos[i] < 0:
                continue
            key = (-prio[i], avail[i])
            if best is None or key < best_key:
                best, best_key, ties = i, key, 1
            elif key == best_key:
                ties += 1
                if rng.randrange(ties) == 0:
                    best = i
        return best

    # ------------------------------------------------------------ events

    def _drop_request(self, peer: Peer, blk: Block) -> None:
        """Forget that ``peer`` has ``blk`` outstanding (bookkeeping on the peer side)."""
        reqs = self._requests.get(peer)
        if reqs is not None and blk in reqs:
            del reqs[blk]
            self._in_flight -= 1
            mine = self._peer_pieces.get(peer)
            if mine is not None:
                left = mine.get(blk.index, 0) - 1
                if left > 0:
                    mine[blk.index] = left
                else:
                    mine.pop(blk.index, None)

    def is_needed(self, index: int, begin: int) -> bool:
        """Is this block still wanted (not had, not received)? Bad offsets: False."""
        if not 0 <= index < self.num_pieces or self._hv[index]:
            return False
        if begin < 0 or begin % self.block_size or begin >= self.piece_size(index):
            return False
        part = self._partials.get(index)
        if part is None:
            return self._prio[index] > 0
        return part.state[begin // self.block_size] != _RECEIVED

    def on_block(self, peer: Peer, index: int, begin: int) -> tuple[bool, list[tuple[Peer, Block]]]:
        """A block arrived: (piece now complete, duplicate requests to cancel).

        A block that is no longer needed (had, already received, unwanted)
        gives (False, []); an impossible index or offset is a ProtocolError.
        Runs once per block, hence the inlined bookkeeping.
        """
        if not 0 <= index < self.num_pieces:
            raise ProtocolError(f"block of piece {index} of {self.num_pieces}")
        bs = self.block_size
        b, rem = divmod(begin, bs)
        size = self._last_size if index == self._last else self.piece_length
        if rem or begin < 0 or begin >= size:
            raise ProtocolError(f"block at offset {begin} of piece {index}")
        part = self._partials.get(index)
        if part is None:
            if self._hv[index] or self._prio[index] <= 0:
                return False, []
            # arrived after its request was cancelled and the piece reset
            self._bucket_remove(index)
            part = self._partials[index] = _Partial(index, self.blocks_in(index))
            self._open[index] = None
        left = size - begin
        length = left if left < bs else bs
        st = part.state[b]
        if st == _REQUESTED:
            who = part.reqs[b]
            if len(who) == 1 and who[0] == peer:
                # the common case, kept free of a Block instance: a plain tuple
                # hashes and compares equal to the NamedTuple key
                del part.reqs[b]
                del self._requests[peer][(index, begin, length)]  # type: ignore[arg-type]
                self._in_flight -= 1
                mine = self._peer_pieces[peer]
                n = mine[index] - 1
                if n:
                    mine[index] = n
                else:
                    del mine[index]
                part.state[b] = _RECEIVED
                part.n_received += 1
                part.contributors.add(peer)
                return part.n_received == len(part.state), []
        blk = Block(index, begin, length)
        if st == _RECEIVED:
            self._drop_request(peer, blk)
            return False, []
        cancels: list[tuple[Peer, Block]] = []
        if st == _REQUESTED:
            for other in part.reqs.pop(b):
                self._drop_request(other, blk)
                if other != peer:
                    cancels.append((other, blk))
        else:
            part.n_open -= 1
            if part.n_open == 0:
                self._open.pop(index, None)
            self._drop_request(peer, blk)
        part.state[b] = _RECEIVED
        part.n_received += 1
        part.contributors.add(peer)
        return part.n_received == len(part.state), cancels

    def on_reject(self, peer: Peer, block: Block) -> None:
        """BEP 6 reject (or a timeout) of one request: the block is free again."""
        self.cancel_requests(peer, (block,))

    def cancel_requests(self, peer: Peer, blocks: Iterable[Block] | None = None) -> None:
        """Requests we gave up on (choked, rejected, timed out); None means all of the peer's."""
        reqs = self._requests.get(peer)
        if not reqs:
            return
        todo = list(reqs) if blocks is None else [blk for blk in blocks if blk in reqs]
        for blk in todo:
            self._drop_request(peer, blk)
            part = self._partials.get(blk.index)
            if part is None:
                continue
            b = blk.begin // self.block_size
            who = part.reqs.get(b)
            if who is None or peer not in who:
                continue
            who.remove(peer)
            self._eg_gen += 1
            if who:
                continue
            del part.reqs[b]
            part.state[b] = _OPEN
            part.n_open += 1
            if b < part.first_open:
                part.first_open = b
            if part.n_received == 0 and not part.reqs:
                self._reset_partial(blk.index)
            else:
                self._open[blk.index] = None

    def _reset_partial(self, index: int) -> None:
        """An abandoned or failed piece goes back among the unstarted candidates."""
        del self._partials[index]
        self._open.pop(index, None)
        if self._wanted(index):
            self._bucket_add(index)

    def requests_of(self, peer: Peer) -> list[Block]:
        reqs = self._requests.get(peer)
        return list(reqs) if reqs else []

    def piece_passed(self, index: int) -> list[tuple[Peer, Block]]:
        """The piece hashed right (or was found on disk): have it; returns requests to cancel."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        cancels: list[tuple[Peer, Block]] = []
        part = self._partials.pop(index, None)
        self._open.pop(index, None)
        if part is not None:
            for b, who in part.reqs.items():
                blk = self._block(index, b)
                for peer in who:
                    self._drop_request(peer, blk)
                    cancels.append((peer, blk))
        self._bucket_remove(index)
        self._eg_gen += 1
        if self._have.set(index):
            self._hv[index] = 1
            self._wm[index] = 0
        else:
            return cancels
        if self._prio[index] > 0:
            self._wanted_missing -= 1
            for peer, bf in self._peers.items():
                if bf is not None and bf[index]:
                    self._interest[peer] -= 1
        return cancels

    def piece_lost(self, index: int) -> None:
        """A piece we had is gone (its file changed on disk): missing and wanted again."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        if not self._hv[index]:
            return
        self._have.clear(index)
        self._hv[index] = 0
        self._eg_gen += 1
        if self._prio[index] > 0:
            self._wanted_missing += 1
            self._wm[index] = 1
            for peer, bf in self._peers.items():
                if bf is not None and bf[index]:
                    self._interest[peer] += 1
        self._bucket_add(index)

    def piece_failed(self, index: int) -> set[Peer]:
        """The piece hashed wrong: returns who sent blocks of it; it is missing again."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(index)
        self._eg_gen += 1
        part = self._partials.get(index)
        if part is None:
            return set()
        for b, who in part.reqs.items():
            blk = self._block(index, b)
            for peer in who:
                self._drop_request(peer, blk)
        self._reset_partial(index)
        return part.contributors

    # ------------------------------------------------------------ state

    @property
    def have(self) -> Bitfield:
        """Our pieces (do not modify; use piece_passed)."""
        return self._have

    @property
    def num_have(self) -> int:
        return self._have.count

    @property
    def in_flight(self) -> int:
        """Outstanding requests, duplicates included."""
        return self._in_flight

    @property
    def wanted_missing(self) -> int:
        return self._wanted_missing

    @property
    def endgame(self) -> bool:
        """No unstarted wanted piece is left: duplicate requests may be handed out."""
        return self._num_candidates == 0 and self._wanted_missing > 0

    def is_complete(self) -> bool:
        return self._wanted_missing == 0

    def partial_pieces(self) -> dict[int, tuple[int, int, int]]:
        """Pieces in progress: index -> (blocks received, blocks requested, blocks)."""
        return {i: (p.n_received, len(p.reqs), len(p.state)) for i, p in self._partials.items()}

    def piece_map(self, cells: int) -> str:
        """The status line's map: '#' have, '+' in flight, '.' missing, ' ' unwanted.

        Each cell covers a range of pieces and shows the least advanced wanted one.
        Cost: per cell, C-speed byte searches plus one step per piece in progress,
        never one per unwanted piece.
        """
        n = self.num_pieces
        if n == 0 or cells <= 0:
            return ""
        cells = min(cells, n)
        hv = self._hv
        wm = self._wm
        partials = self._partials
        out = []
        for c in range(cells):
            lo = c * n // cells
            hi = (c + 1) * n // cells
            ch = " "
            i = wm.find(1, lo, hi)  # jump from wanted missing piece to the next
            while i >= 0:
                if i not in partials:
                    ch = "."
                    break
                ch = "+"
                i = wm.find(1, i + 1, hi)
            if ch == " " and hv.find(1, lo, hi) >= 0:
                ch = "#"
            out.append(ch)
        return "".join(out)

    def availability_map(self, cells: int) -> tuple[int, ...]:
        """Per cell, the lowest availability among its pieces."""
        n = self.num_pieces
        if n == 0 or cells <= 0:
            return ()
        cells = min(cells, n)
        avail = self._avail
        return tuple(
            min(avail[c * n // cells : (c + 1) * n // cells]) + self.seeds for c in range(cells)
        )
