"""Piece completion: hash and write a complete piece, then announce it or blame its senders.

Owns: the hash+write tasks in flight (``writes``: ``stop`` awaits them, never
cancels them, as their thread would go on), who sent each block
of a piece in progress (``senders``), the bad copies of failed pieces kept to
find the liar once a good copy passes (``suspects``) and ``hash_failures``.
The buffer comes from ``swarm.parts.download`` (``take_buffer``) and goes back
to it (``written``, ``recycle``); strikes and bans are the pool's
(``ConnectionPool.strike``); the verified bit is set on ``Torrent.have``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, cast

from swarm.core import wire
from swarm.parts.pool import BAN_STRIKES

if TYPE_CHECKING:
    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: Failed pieces kept for block-by-block blame (memory: this many pieces).
MAX_SUSPECTS = 16


class PieceCompletion:
    """From a complete buffer to a verified piece on disk (or to blame)."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.writes: set[asyncio.Task[Any]] = set()
        # who sent each block of a piece in progress (for blame on a hash failure)
        self.senders: dict[int, dict[int, PeerConnection]] = {}
        # failed pieces with several senders: (bad copy, senders), compared with the good one later
        self.suspects: OrderedDict[int, tuple[bytes, dict[int, PeerConnection]]] = OrderedDict()
        self.hash_failures = 0

    def note_sender(self, index: int, begin: int, peer: PeerConnection) -> None:
        senders = self.senders.get(index)
        if senders is None:
            senders = self.senders[index] = {}
        senders[begin] = peer

    def piece_complete(self, index: int) -> None:
        view = self.torrent.downloader.take_buffer(index)
        if view is None:
            return
        write = self.torrent.spawn(self._write_piece(index, view))
        self.writes.add(write)
        write.add_done_callback(self.writes.discard)

    async def _write_piece(self, index: int, view: memoryview) -> None:
        t = self.torrent
        try:
            ok = await t.storage.write_piece(index, view)
        finally:
            t.downloader.written(view)
        if t.stopped or t.picker is None:
            if ok:
                t.have.set(index)  # on disk: counted in the resume data stop() saves
            return
        senders = self.senders.pop(index, {})
        if ok:
            suspect = self.suspects.pop(index, None)
            if suspect is not None:
                self._blame(index, suspect[0], suspect[1], view)
            self._piece_passed(index)
        else:
            self._piece_failed(index, view, senders)
        t.downloader.recycle(index, view)

    async def wait_writes(self) -> None:
        """In-flight hash+writes finish (shielded: a cancelled stop() does not cancel
        them) and are counted in the resume file."""
        if self.writes:
            await asyncio.shield(asyncio.wait(list(self.writes)))

    def _piece_passed(self, index: int) -> None:
        t = self.torrent
        assert t.picker is not None
        t.downloader.send_cancels(t.picker.piece_passed(index))
        t.have.set(index)
        t.resume_dirty = True
        t.wake()  # saved within RESUME_INTERVAL even if the last peer has gone
        # HAVE to every peer, also those that have the piece: otherwise they never
        # learn that we are complete (their "seeds" and their trackers' stay 0)
        have_msg = wire.encode_have(index)
        for p in t.peers:
            p.send(have_msg)
            if p.am_interested and not t.picker.is_interesting(p):
                t.downloader.drop_interest(p)
        t.emit("piece", action="verified", index=index)
        t.view.progress(time.monotonic())
        for cb in t.piece_verified:
            cb(index)
        if t.is_complete():
            t.on_complete()
        elif t.downloader.under_budget():
            for p in t.peers:
                if p.am_interested and len(p.requests) < 4:
                    t.downloader.fill(p)

    def _blame(self, index: int, bad: bytes, senders: dict[int, PeerConnection], good: memoryview) -> None:
        """The piece passed at last: whoever sent a block that differs from it lied."""
        liars: set[PeerConnection] = set()
        for begin, p in senders.items():
            end = min(begin + wire.BLOCK_SIZE, len(good))
            if bad[begin:end] != good[begin:end]:
                liars.add(p)
        for p in liars:
            self.strike(p, BAN_STRIKES)  # a proven liar: banned at once

    def strike(self, p: PeerConnection, weight: int) -> None:
        """Hash-failure strikes go to the pool, or to the web seed that sent the bytes."""
        webseeds = self.torrent.webseeds
        if webseeds.owns(p):
            webseeds.hash_failed(p)
        else:
            self.torrent.pool.strike(p, weight)

    def _piece_failed(
        self, index: int, view: memoryview | None = None, senders: dict[int, PeerConnection] | None = None
    ) -> None:
        t = self.torrent
        assert t.picker is not None
        self.hash_failures += 1
        contributors = cast(set["PeerConnection"], t.picker.piece_failed(index))
        log.warning(
            "%s: piece %d failed the hash check (from %s)",
            t.meta.name, index, ", ".join(p.name() for p in contributors) or "?",
        )
        t.emit("piece", action="failed", index=index, peer=", ".join(sorted(p.name() for p in contributors)))
        if len(contributors) == 1:
            # alone to blame: two such failures and it is out
            self.strike(next(iter(contributors)), 2)
        elif view is not None and senders:
            # shared: keep the bad copy; when the piece passes, the blocks that differ name the
            # liar; in v2 the block hashes (asked of a peer now) name it sooner
            self.suspects[index] = (bytes(view), dict(senders))
            while len(self.suspects) > MAX_SUSPECTS:
                self.suspects.popitem(last=False)
            t.hashes.blame_blocks(index)
        else:
            for p in contributors:
                self.strike(p, 1)
        for p in list(t.peers):
            t.downloader.fill(p)
