"""The upload side: their requests, our rejects, reading blocks back, and what we served.

Owns: the upload counters (``uploaded``, ``up``) and the pieces found changed
on disk under us (``lost_pieces``, ``changed_files``). Each peer's queue of
requests lives on its ``PeerConnection.upload_queue``, served in order by the
connection's own task under write back-pressure (``PeerConnection._serve_uploads``);
this part decides what enters that queue (``on_request``), what leaves it
when a peer is cancelled or choked (``on_cancel``, ``on_choked``), and how a
block is read (``read_block``, through Storage's piece cache).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sys
import time
from typing import TYPE_CHECKING, cast

from swarm.core import wire
from swarm.core.rate import RateMeter
from swarm.core.seeding import FirstCopies, FirstPass, RequestSpread, uplink_busy
from swarm.errors import ProtocolError, StorageError, SwarmError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: Linux ioctl: the bytes of a TCP socket's send queue not yet sent
SIOCOUTQNSD = 0x894B
#: seconds a judgement of the uplink (``_uplink_busy``) holds: it asks every peer's socket
BUSY_RECHECK = 0.01


class Uploader:
    """What we serve, and to whom."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.up = RateMeter()
        self.uploaded = 0
        # pieces whose data changed on disk under us (see upload_failed)
        self.lost_pieces = 0
        self.changed_files: set[int] = set()
        #: what we have sent of each piece: a choked peer gets only first copies
        self.first_copies = FirstCopies(torrent.num_pieces, torrent.meta.piece_length, torrent.meta.total_length)
        #: an initial seed (``swarm seed``) gives each piece to one peer until all have left it
        self.first_pass = (
            FirstPass(torrent.num_pieces) if torrent.seed_only and torrent.superseed is None else None
        )
        #: requests the first pass holds back (asked again after a refusal): see _answer_late
        self._held: set[tuple[PeerConnection, int, int, int]] = set()
        #: when the uplink was last judged, and whether it was busy
        self._busy = (-BUSY_RECHECK, False)

    def greet(self, peer: PeerConnection) -> None:
        """What we have, told to a new peer (BEP 3 bitfield or BEP 6 have-all/none), and
        the pieces it may request while choked (BEP 6 allowed-fast)."""
        t = self.torrent
        have = t.have
        if t.superseed is not None:
            # BEP 16: claim nothing, then show this peer one piece
            if peer.supports_fast:
                peer.send(wire.encode_have_none())
                peer.have_sent = "have_none"
            self.reveal(peer)
            return
        if peer.supports_fast and have.count == 0:
            peer.send(wire.encode_have_none())
            peer.have_sent = "have_none"
        elif peer.supports_fast and have.all():
            peer.send(wire.encode_have_all())
            peer.have_sent = "have_all"
        elif have.count:
            peer.send(wire.encode_bitfield(have.to_bytes()))
            peer.have_sent = "bitfield"
        if peer.supports_fast and have.count:
            with contextlib.suppress(ProtocolError):
                allowed = wire.allowed_fast_set(peer.address[0], t.info_hash, t.num_pieces)
                peer.our_allowed_fast = frozenset(i for i in allowed if have[i])
                for i in peer.our_allowed_fast:
                    peer.send(wire.encode_allowed_fast(i))
                self._warm([i for i in allowed if i in peer.our_allowed_fast])

    def _warm(self, pieces: list[int]) -> None:
        """Load the pieces a choked newcomer will ask for first (its allowed-fast ones we
        would still serve it) into Storage's read cache now, a round trip before its
        requests arrive: the disk read and hash check were in front of its first data.
        At most a quarter of the cache; a piece cached or loading already costs nothing."""
        storage = self.torrent.storage
        if not getattr(storage, "caches_pieces", False):
            return
        for i in pieces[: storage.cache_pieces // 4]:
            if self.first_copies.serve_choked(i):
                self.torrent.spawn(self._load(i))

    async def _load(self, index: int) -> None:
        with contextlib.suppress(SwarmError):  # a bad piece is found again when asked for
            await self.torrent.storage.read_block(index, 0, self.torrent.meta.piece_size(index))

    # ------------------------------------------------------------ super-seeding (BEP 16)

    def reveal(self, peer: PeerConnection) -> None:
        """Show ``peer`` its next piece (a HAVE), if it is due one."""
        t = self.torrent
        ss, picker = t.superseed, t.picker
        if ss is None or picker is None or peer.closed:
            return
        theirs = peer.have
        index = ss.next_piece(
            peer, (lambda i: theirs is not None and theirs[i]), picker.availability
        )
        if index is not None:
            peer.send(wire.encode_have(index))

    @property
    def watches_haves(self) -> bool:
        """Does ``peer_has`` need the peers' HAVEs and bitfields?"""
        fp = self.first_pass
        return self.torrent.superseed is not None or (fp is not None and not fp.done)

    def peer_has(self, peer: PeerConnection, indexes: Iterable[int]) -> None:
        """A peer announced pieces (HAVE, or its bitfield). First pass: those are out.
        Super-seeding: whoever was shown one of them is due the next (it got it, or
        passed it on), and so is this peer if its piece turned out to be one it
        already had."""
        fp = self.first_pass
        if fp is not None and not fp.done:
            for i in indexes:
                fp.announced(i)
        ss = self.torrent.superseed
        if ss is None:
            return
        due: list[PeerConnection] = []
        for i in indexes:
            due += cast("list[PeerConnection]", ss.on_have(peer, i))
        if ss.pending(peer) is None and peer not in due:
            due.append(peer)
        for p in due:
            self.reveal(p)

    # ------------------------------------------------------------ requests in

    def on_request(self, peer: PeerConnection, m: wire.Request) -> None:
        first_while_choked = peer.am_choking and not peer.asked
        peer.asked = True
        self._queue_or_reject(peer, m)
        if first_while_choked:  # a slot left unused may be its now, not at the next tick
            self.torrent.choking.reclaim_idle_slots(time.monotonic())
        elif not peer.am_choking:
            self.torrent.choking.on_request(peer)

    def _queue_or_reject(self, peer: PeerConnection, m: wire.Request, late: bool = False) -> None:
        """``late``: a request the first pass held back (``_answer_late``): refused now, at once."""
        index = m.index
        if not self.torrent.have[index] or m.length > wire.BLOCK_SIZE * 8:
            self.reject(peer, m.index, m.begin, m.length)
            return
        ss = self.torrent.superseed
        if ss is not None and not ss.may_request(peer, index):
            self.reject(peer, m.index, m.begin, m.length)  # a piece we did not show it
            return
        if peer.am_choking and (
            index not in peer.our_allowed_fast or not self.first_copies.serve_choked(index)
        ):
            # allowed fast (BEP 6) is the same set for a whole /24: on a LAN every
            # peer asks for the same pieces, so only their first copy is served
            self.reject(peer, m.index, m.begin, m.length)
            return
        fp = self.first_pass
        if (
            fp is not None
            and peer.supports_fast
            and not fp.decide(
                peer, index, self._holders(index), self._uplink_busy, time.monotonic(), len(self.torrent.peers)
            )
        ):
            # another peer's first copy, or a piece other peers hold after the pass; only
            # a BEP 6 peer can be told no (a BEP 3 peer would wait until its own timeout)
            delay = 0.0 if late else fp.refuse(peer, index, m.begin)
            if delay:  # asked again at once (libtorrent): not a reject per round trip
                self._held.add((peer, index, m.begin, m.length))
                asyncio.get_running_loop().call_later(delay, self._answer_late, peer, m)
            else:
                self.reject(peer, m.index, m.begin, m.length)
            return
        if not peer.queue_upload(index, m.begin, m.length):
            self.reject(peer, m.index, m.begin, m.length)
            return
        self.first_copies.note(index, m.length)

    def _answer_late(self, peer: PeerConnection, m: wire.Request) -> None:
        """A held request, ``REASK_DELAY`` later: decided again, served if the pass now
        allows it (it ended, the piece came free, the uplink has room), else rejected.
        Without this a leecher's last blocks waited out the delay for a reject."""
        key = (peer, m.index, m.begin, m.length)
        if key in self._held:
            self._held.discard(key)
            if not peer.closed:
                self._queue_or_reject(peer, m, late=True)

    def _uplink_busy(self) -> bool:
        """Has the uplink other work? Judged again at most every ``BUSY_RECHECK``: a
        libtorrent leecher asks again at once after a refusal, and each judgement
        asks the kernel about every peer's socket."""
        now = time.monotonic()
        at, busy = self._busy
        if now - at >= BUSY_RECHECK:
            queued = sum(len(p.upload_queue) * wire.BLOCK_SIZE + _unsent(p) for p in self.torrent.peers)
            busy = uplink_busy(queued, self.up.rate(now))
            self._busy = (now, busy)
        return busy

    def _holders(self, index: int) -> int:
        """Connected peers that announced ``index`` (the picker counts them)."""
        picker = self.torrent.picker
        return 0 if picker is None else picker.availability(index)

    @staticmethod
    def reject(peer: PeerConnection, index: int, begin: int, length: int) -> None:
        if peer.supports_fast:
            peer.send(wire.encode_reject(index, begin, length))

    def on_cancel(self, peer: PeerConnection, m: wire.Cancel) -> None:
        held = (peer, m.index, m.begin, m.length)
        if held in self._held:  # held back by the first pass: not served later
            self._held.discard(held)
            self.reject(peer, m.index, m.begin, m.length)
        elif peer.cancel_upload(m.index, m.begin, m.length) and peer.supports_fast:
            # BEP 6: a cancelled request is answered with a reject.
            peer.send(wire.encode_reject(m.index, m.begin, m.length))

    def give_back(self, peer: PeerConnection) -> None:
        """``peer`` was choked or left: its first-pass pieces go to whoever asks."""
        if self.first_pass is not None:
            self.first_pass.release(peer)

    def on_choked(self, peer: PeerConnection) -> None:
        """We just choked ``peer``: drop its queued requests (BEP 6: reject them,
        but keep those for its allowed-fast pieces); its first-pass pieces go to others."""
        self.give_back(peer)
        if peer.supports_fast:
            # BEP 6: allowed-fast requests stay queued, the others are rejected; in place
            # (PeerConnection.drop_uploads): the serving task keeps the same deque
            for index, begin, length in peer.drop_uploads(keep=peer.our_allowed_fast):
                peer.send(wire.encode_reject(index, begin, length))
        else:
            peer.drop_uploads()

    # ------------------------------------------------------------ serving

    def block_now(self, index: int, begin: int, length: int) -> memoryview | None:
        """``read_block`` without a wait when its piece is in Storage's cache (the
        seed's common case: one piece serves 64 requests); None otherwise."""
        t = self.torrent
        cached = getattr(t.storage, "cached_piece", None)
        if cached is None or not 0 <= index < t.num_pieces:
            return None
        piece = cached(index)
        if piece is None or begin < 0 or length <= 0 or begin + length > len(piece):
            return None  # read_block decides (and raises for bad bounds)
        return memoryview(piece)[begin : begin + length]

    async def read_block(
        self, index: int, begin: int, length: int, spread: RequestSpread | None = None
    ) -> memoryview:
        """A block for an upload. The piece cache is Storage's (one disk read
        for every block and peer, SHA-1 checked on load); when it holds whole
        pieces we ask for the piece and slice it here, without a copy."""
        t = self.torrent
        if not 0 <= index < t.num_pieces:
            raise ProtocolError(f"request for piece {index} of {t.num_pieces}")
        size = t.meta.piece_size(index)
        if begin < 0 or length <= 0 or begin + length > size:
            raise ProtocolError(f"request {begin}+{length} outside piece {index} of {size} bytes")
        storage = t.storage
        if not getattr(storage, "caches_pieces", False):
            return memoryview(await storage.read_block(index, begin, length))
        if spread is not None and not spread.whole_pieces(t.meta.piece_length):
            # a peer that asks a block here and there: no piece loaded and checked for it
            return memoryview(await storage.read_block(index, begin, length, load=False))
        piece = await storage.read_block(index, 0, size)
        return memoryview(piece)[begin : begin + length]

    def on_uploaded(self, peer: PeerConnection, n: int) -> None:
        now = time.monotonic()
        peer.uploaded += n
        peer.up.add(n, now)
        self.uploaded += n
        self.up.add(n, now)

    def upload_failed(
        self, peer: PeerConnection, index: int, begin: int, length: int, exc: StorageError
    ) -> bool:
        """A piece we advertised could not be read back intact (a file changed,
        shrank or vanished under us; Storage has already dropped it).

        We stop advertising and serving it, and fetch it again unless we only
        seed. Returns True when the peer was answered with a BEP 6 reject and
        stays connected; a peer without the fast extension is disconnected (it
        would wait for the block forever and keeps our old bitfield otherwise).
        """
        self._piece_lost(index, exc)
        if peer.supports_fast and not peer.closed:
            peer.send(wire.encode_reject(index, begin, length))
            return True
        peer.close(f"cannot serve piece {index}: {exc}")
        return False

    def _piece_lost(self, index: int, exc: StorageError) -> None:
        t = self.torrent
        if not t.have.clear(index):
            return  # already known (another request of the same piece)
        self.lost_pieces += 1
        if t.picker is not None:
            t.picker.piece_lost(index)
        layout = getattr(t.storage, "layout", None)
        files = set(layout.files_for_piece(index)) if layout is not None else set()
        new = files - self.changed_files
        if new or not files:
            self.changed_files |= files
            names = ", ".join(
                os.path.join(str(t.save_path), *t.meta.files[i].path) for i in sorted(new)
            )
            message = (
                f"{names or t.meta.name} changed on disk: piece {index} no longer matches "
                f"its hash; not serving it any more ({exc})"
            )
            log.warning("%s: %s", t.meta.name, message)
            t.emit("error", message=message, fatal=False)
        else:
            log.info("%s: piece %d lost too: %s", t.meta.name, index, exc)
        if not t.seed_only and t.state == "seeding":
            t.state = "downloading"  # fetch it again from whoever has it
        if not t.seed_only:
            t.downloader.update_interest_all()


def _unsent(peer: PeerConnection) -> int:
    """Bytes written to ``peer`` and not yet sent: asyncio's buffer and the kernel's.

    Why: the serving task moves requests into the transport as fast as it takes
    them, so the request queues alone were nearly empty at a seed whose uplink was
    99 % busy (24 leechers), and the first pass took it for idle."""
    t = peer.transport
    if t is None:
        return 0
    n = t.get_write_buffer_size()
    sock = t.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError, ValueError):
            out = fcntl.ioctl(sock.fileno(), SIOCOUTQNSD, bytes(4))
            n += int.from_bytes(out, sys.byteorder, signed=True)
    return n
