"""The download side: interest, the request pipeline, its timeouts, and the piece buffers.

Owns: the buffers of pieces in progress (``buffers``, their total
``buffer_bytes``, the ``buffered`` bitfield, spare buffers for reuse), which
peer a block is landing from (``landing``: the only writers of piece buffers
besides ``on_piece``; a block given up mid-copy is diverted by
``abandon_landing``), and the payload counters (``downloaded``, ``wasted``, ``down``).
Each peer's outstanding requests live on its ``PeerConnection.requests``;
only this part adds or removes them. Which block to ask for is the picker's
call (``swarm.core.picker``), how many to keep in flight and when a peer has
timed out are ``swarm.core.requests``'s. A completed piece is handed to
``swarm.parts.completion`` with ``take_buffer``.

The block path is the hot one: a block lands in its piece buffer through the
decoder's block sink (``make_sink``), and ``make_landed``'s callback (or
``on_piece``, for a block split across reads) only does dictionary bookkeeping
per block.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, cast

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.picker import Block
from swarm.core.rate import RateMeter
from swarm.core.requests import (
    RATE_WARMUP,
    REFUSED_FOR,
    REQUEST_TIMEOUT,
    Verdict,
    is_delivering,
    pipeline_depth,
    refill_count,
    request_verdict,
    shared_seed_queue_time,
)
from swarm.diskio import aligned_buffer
from swarm.errors import ProtocolError
from swarm.peer import PeerConnection

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: In-progress piece buffers (bytes) before we stop starting new pieces.
MAX_BUFFER_BYTES = 96 * 1024 * 1024


class Downloader:
    """What we ask of peers, and where their blocks go."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        n = torrent.num_pieces
        self.buffers: dict[int, memoryview] = {}
        self.buffer_bytes = 0
        self.buffered = Bitfield(n)
        self.landing: dict[tuple[int, int], PeerConnection] = {}
        self.spare: list[memoryview] = []  # finished piece buffers for reuse
        self.down = RateMeter()
        self.downloaded = 0
        self.wasted = 0
        #: per peer, pieces it refused while unchoking us, and when (see on_reject)
        self.refused: dict[PeerConnection, dict[int, float]] = {}
        #: seconds before a silent peer's requests go to others (tests shorten it)
        self.request_timeout = REQUEST_TIMEOUT

    # ------------------------------------------------------------ blocks in

    def make_sink(self, peer: PeerConnection) -> Callable[[int, int, int], memoryview | None]:
        requests = peer.requests
        landing = self.landing
        buffers = self.buffers

        def sink(index: int, begin: int, length: int) -> memoryview | None:
            key = (index, begin)
            req = requests.get(key)
            if req is None or req[0] != length or key in landing:
                return None
            view = buffers.get(index)
            if view is None:
                return None
            landing[key] = peer
            return view[begin : begin + length]

        return sink

    def make_landed(self, peer: PeerConnection) -> Callable[[int, int, int], None]:
        """The decoder's ``block_landed``: ``on_piece`` for a block the sink took and the
        decoder copied whole within one read, the common case. The sink has just checked
        the request and set the landing mark, and nothing ran since: no checks, no
        message object. Bytes are summed on ``peer.landed_bytes`` for ``received``."""
        requests = peer.requests
        landing = self.landing
        torrent = self.torrent
        completion = torrent.completion
        send_cancels = self.send_cancels

        def landed(index: int, begin: int, length: int) -> None:
            key = (index, begin)
            del landing[key]
            del requests[key]
            picker = torrent.picker
            assert picker is not None
            complete, cancels = picker.on_block(peer, index, begin)
            completion.note_sender(index, begin, peer)
            peer.landed_bytes += length
            if cancels:
                send_cancels(cancels)
            if complete:
                completion.piece_complete(index)

        return landed

    def on_piece(self, peer: PeerConnection, m: wire.Piece) -> int:
        """Bytes of a requested block received (0 for an unrequested one).
        Once per 16 KiB block: attributes are read once, and no cancels, no call."""
        index = m.index
        begin = m.begin
        key = (index, begin)
        data = m.data
        if data is None:
            # landed through the sink: only the peer that owns the landing mark
            # may complete it (a late block was diverted, see abandon_landing)
            landing = self.landing
            if landing.get(key) is not peer:
                return 0
            del landing[key]
        req = peer.requests.pop(key, None)
        if req is None:
            self.wasted += len(data) if data is not None else 0
            return 0
        n = req[0]
        torrent = self.torrent
        picker = torrent.picker
        assert picker is not None
        if data is not None:
            if len(data) != n:
                raise ProtocolError(f"block {index}:{begin} of {len(data)} bytes, we asked for {n}")
            # Declined by the sink (duplicate in flight elsewhere): only use it if still needed.
            view = self.buffers.get(index)
            if view is None or not picker.is_needed(index, begin) or (key in self.landing):
                self.wasted += n
                picker.cancel_requests(peer, (Block(index, begin, n),))
                return n
            view[begin : begin + n] = data
        complete, cancels = picker.on_block(peer, index, begin)
        completion = torrent.completion
        completion.note_sender(index, begin, peer)
        if cancels:
            self.send_cancels(cancels)
        if complete:
            completion.piece_complete(index)
        return n

    def received(self, peer: PeerConnection, got: int, now: float) -> None:
        """Payload counted once per read (~16 blocks), not per block."""
        peer.downloaded += got
        peer.down.add(got, now)
        peer.last_block = now
        peer.snubbed = False
        self.downloaded += got
        self.down.add(got, now)
        picker = self.torrent.picker
        if picker is not None:
            picker.set_delivering(peer, True)

    @staticmethod
    def send_cancels(cancels: Iterable[tuple[Any, Block]]) -> None:
        """Endgame: the picker names blocks now arrived that others were also asked for."""
        for o, blk in cancels:
            other = cast(PeerConnection, o)
            if other.requests.pop((blk.index, blk.begin), None) is not None:
                other.send(wire.encode_cancel(blk.index, blk.begin, blk.length))

    # ------------------------------------------------------------ what they have

    def on_choke(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_choking = True
        if not peer.supports_fast:
            # BEP 3: a choke drops every outstanding request.
            self.drop_requests(peer)

    def on_unchoke(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_choking = False
        peer.unchoked_at = time.monotonic()
        peer.last_block = peer.unchoked_at

    def on_have(self, peer: PeerConnection, m: wire.Have) -> None:
        picker = self.torrent.picker
        assert picker is not None
        if peer.have is None:
            peer.have = Bitfield(self.torrent.num_pieces)
            picker.add_peer(peer, peer.have)
        if peer.have.set(m.index):
            picker.peer_have(peer, m.index)
            peer.new_haves += 1
        if self.torrent.uploader.watches_haves:
            self.torrent.uploader.peer_has(peer, (m.index,))
        self.update_interest(peer)

    def on_bitfield(self, peer: PeerConnection, m: wire.BitfieldMsg) -> None:
        picker = self.torrent.picker
        assert picker is not None
        bf = Bitfield.from_bytes(m.data, self.torrent.num_pieces)
        peer.have = bf
        peer.have_received = "bitfield"
        if bf.all():
            picker.add_peer_have_all(peer)
        else:
            picker.add_peer(peer, bf)
        if self.torrent.uploader.watches_haves:
            self.torrent.uploader.peer_has(peer, bf)
        self.update_interest(peer)

    def on_have_all(self, peer: PeerConnection, m: Any) -> None:
        if not peer.supports_fast:
            raise ProtocolError("have-all without the fast extension")
        picker = self.torrent.picker
        assert picker is not None
        peer.have = Bitfield(self.torrent.num_pieces, full=True)
        peer.have_received = "have_all"
        picker.add_peer_have_all(peer)
        self.update_interest(peer)

    def on_have_none(self, peer: PeerConnection, m: Any) -> None:
        if not peer.supports_fast:
            raise ProtocolError("have-none without the fast extension")
        picker = self.torrent.picker
        assert picker is not None
        peer.have = Bitfield(self.torrent.num_pieces)
        peer.have_received = "have_none"
        picker.add_peer(peer, peer.have)
        self.update_interest(peer)

    def on_allowed_fast(self, peer: PeerConnection, m: wire.AllowedFast) -> None:
        if not self.torrent.have[m.index]:
            peer.allowed_fast.add(m.index)

    def on_reject(self, peer: PeerConnection, m: wire.RejectRequest) -> None:
        if not peer.supports_fast:
            raise ProtocolError("reject-request without the fast extension")
        req = peer.requests.pop((m.index, m.begin), None)
        if peer.peer_choking:
            # an allowed-fast piece refused (its first copy went to someone else):
            # ask others for it, not this peer again while it chokes us
            peer.allowed_fast.discard(m.index)
        elif req is not None:
            # a live request refused while unchoked (not the answer to our cancel):
            # a seed giving that piece to another peer first (core.seeding.FirstPass);
            # ask it for other pieces for a while
            self.refused.setdefault(peer, {})[m.index] = time.monotonic()
        picker = self.torrent.picker
        if req is not None and picker is not None:
            self.abandon_landing(peer, (m.index, m.begin))
            picker.cancel_requests(peer, (Block(m.index, m.begin, req[0]),))
            # re-issue at once to whoever can take it
            self.fill_others(peer)

    # ------------------------------------------------------------ interest and requests

    def update_interest(self, peer: PeerConnection) -> None:
        t = self.torrent
        assert t.picker is not None
        want = t.picker.is_interesting(peer) and not t.seed_only
        if want != peer.am_interested:
            peer.am_interested = want
            peer.send(wire.encode_interested() if want else wire.encode_not_interested())
            if want:
                peer.last_block = time.monotonic()
        if want:
            self.fill(peer)

    def update_interest_all(self) -> None:
        for p in list(self.torrent.peers):
            if p.have is not None:
                self.update_interest(p)

    def drop_interest(self, peer: PeerConnection) -> None:
        if peer.am_interested:
            peer.am_interested = False
            peer.send(wire.encode_not_interested())

    def drop_requests(self, peer: PeerConnection) -> None:
        if not peer.requests:
            return
        for key in list(peer.requests):
            self.abandon_landing(peer, key)
        peer.requests.clear()
        if self.torrent.picker is not None:
            self.torrent.picker.cancel_requests(peer)

    def peer_left(self, peer: PeerConnection) -> None:
        """A closed peer's requests: no longer landing, back to the picker's pool."""
        self.refused.pop(peer, None)
        for key in list(peer.requests):
            self.abandon_landing(peer, key)
        peer.requests.clear()

    def abandon_landing(self, peer: PeerConnection, key: tuple[int, int]) -> None:
        """We gave up ``peer``'s block ``key``: if it is landing, the rest of it goes
        to a throw-away buffer (the block may be fetched again from someone else)."""
        if self.landing.get(key) is peer:
            del self.landing[key]
            if peer.decoder is not None:
                peer.decoder.abandon_block(*key)

    def fill_others(self, peer: PeerConnection | None = None) -> None:
        """Top up every pipeline but ``peer``'s (blocks it gave back go to others)."""
        for p in list(self.torrent.peers):
            if p is not peer:
                self.fill(p)

    def fill(self, peer: PeerConnection, now: float | None = None) -> None:
        """Top up this peer's request pipeline."""
        t = self.torrent
        picker = t.picker
        if picker is None or peer.closed or not peer.am_interested or peer.have is None:
            return
        if t.hashes.waiting:  # no piece could be verified before its piece layer is in
            return
        choked = peer.peer_choking
        if choked and not peer.allowed_fast:
            return
        if now is None:
            now = time.monotonic()
        down = peer.down
        depth = pipeline_depth(
            down.rate(now), peer.reqq, peer.downloaded, snubbed=peer.snubbed,
            warming=down.age(now) < RATE_WARMUP,
            queue_time=shared_seed_queue_time(peer.have.all(), picker.leechers_about()),
        )  # fmt: skip
        depth = t.session.throttle.cap_depth(depth)  # --max-down: the allowed rate, not the link
        peer.refill_at = depth - depth // 8  # refill_count's batch: Torrent.on_messages skips us above it
        count = refill_count(depth, len(peer.requests))
        if not count:
            return
        has: Bitfield | None = None if peer.have.all() else peer.have
        refused = self.refused.get(peer)
        if refused and not choked:
            has = self._without_refused(peer, refused, now)
        if choked:
            has = Bitfield(t.num_pieces)
            for i in peer.allowed_fast:
                if peer.have[i] and not t.have[i]:
                    has.set(i)
        over = self.buffer_bytes >= MAX_BUFFER_BYTES
        if over:
            # no new pieces: only blocks of pieces that already have a buffer
            has = self.buffered
        blocks = picker.pick(peer, has, count)
        if not blocks:
            return
        requests = peer.requests
        buffers = self.buffers
        give_back: list[Block] = []
        send = peer.send
        enc = wire.encode_request
        for blk in blocks:
            index = blk.index
            if index not in buffers:
                if over or (peer.have is not None and not peer.have[index]):
                    give_back.append(blk)
                    continue
                self._alloc(index)
            elif over and not peer.have[index]:
                give_back.append(blk)
                continue
            requests[(index, blk.begin)] = (blk.length, now)
            send(enc(index, blk.begin, blk.length))
        if give_back:
            picker.cancel_requests(peer, give_back)

    def _without_refused(self, peer: PeerConnection, refused: dict[int, float], now: float) -> Bitfield | None:
        """The peer's pieces but those it refused less than ``REFUSED_FOR`` ago."""
        assert peer.have is not None
        for i in [i for i, at in refused.items() if now - at > REFUSED_FOR]:
            del refused[i]
        if not refused:
            del self.refused[peer]
            return None if peer.have.all() else peer.have
        has = peer.have.copy()
        for i in refused:
            has.clear(i)
        return has

    def check_requests(self, peer: PeerConnection, now: float) -> None:
        """Once a tick: re-issue a timed-out peer's requests elsewhere; snub a silent one;
        tell the picker whether it still delivers (endgame leaves its blocks to it)."""
        picker = self.torrent.picker
        if picker is not None:
            picker.set_delivering(peer, is_delivering(peer.last_block, now, self.request_timeout))
        oldest = min(t for _, t in peer.requests.values()) if peer.requests else None
        verdict = request_verdict(
            oldest, peer.last_block, interested=peer.am_interested, peer_choking=peer.peer_choking, now=now,
            timeout=self.request_timeout,
        )
        if verdict is Verdict.TIMED_OUT:
            log.info("%s: requests to %s timed out", self.torrent.meta.name, peer.name())
            peer.snubbed = True
            self.drop_requests(peer)
            for other in list(self.torrent.peers):
                if other is not peer:
                    self.fill(other, now)
        elif verdict is Verdict.SNUBBED:
            peer.snubbed = True
        if peer.am_interested:
            self.fill(peer, now)

    # ------------------------------------------------------------ piece buffers

    def _alloc(self, index: int) -> None:
        meta = self.torrent.meta
        size = meta.piece_size(index)
        # Reuse a finished piece's buffer: a fresh 1 MiB bytearray costs a page fault
        # per 4 KiB (zero-filling was ~8 % of the leecher's time).
        spare = self.spare
        # Page-aligned (an anonymous mmap), so storage can write it with O_DIRECT.
        self.buffers[index] = spare.pop() if spare and size == meta.piece_length else aligned_buffer(size)
        self.buffer_bytes += size
        self.buffered.set(index)

    def buffer_for(self, index: int) -> memoryview:
        """The piece's buffer, allocated if needed (web seeds fill it outside the wire path)."""
        view = self.buffers.get(index)
        if view is None:
            self._alloc(index)
            view = self.buffers[index]
        return view

    def take_buffer(self, index: int) -> memoryview | None:
        """A complete piece's buffer, handed to completion (still counted until ``written``).
        From here nothing writes into it: the sink and on_piece find no buffer for
        the index, and any block still landing in it (none, if the bookkeeping is
        right) is diverted."""
        view = self.buffers.pop(index, None)
        if view is None:
            return None
        for key, peer in [(k, p) for k, p in self.landing.items() if k[0] == index]:
            self.abandon_landing(peer, key)
        self.buffered.clear(index)
        return view

    def written(self, view: memoryview) -> None:
        """A taken buffer's write is over: it no longer counts against MAX_BUFFER_BYTES."""
        self.buffer_bytes -= len(view)

    def recycle(self, index: int, view: memoryview) -> None:
        # safe to reuse: no decoder writes into it any more (see take_buffer)
        # spare + in-use buffers stay within MAX_BUFFER_BYTES
        piece_length = self.torrent.meta.piece_length
        spare = len(self.spare) * piece_length
        if len(view) == piece_length and spare + self.buffer_bytes + len(view) <= MAX_BUFFER_BYTES:
            self.spare.append(view)

    def under_budget(self) -> bool:
        return self.buffer_bytes < MAX_BUFFER_BYTES
