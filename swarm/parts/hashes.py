"""BEP 52 hash exchange for one torrent: serve ``hash request``s, fetch missing piece layers.

Owns: the ``PieceLayerServer`` (answers from the piece layers we hold, and
block-layer requests from a piece's data hashed on demand, one per peer at a
time, in a worker thread), the block-hash requests that find which sender of
a failed v2 piece lied (``blame_blocks``) and,
while a v2-only torrent lacks piece layers (a ``urn:btmh:`` magnet, or a
.torrent without them), the ``PieceLayerFetcher``. Until every layer is in,
no piece is requested: none could be verified, and each would count as a
hash failure against an honest peer. Every peer of a v2-only torrent speaks
v2 (the truncated v2 hash in the handshake says so; libtorrent sets the
upgrade bit only on the v1 connections of a hybrid); each answer is checked
against its file's ``pieces root`` (``swarm.core.hashes``), then storage
verifies pieces against the layers and the download starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from swarm.core import merkle, wire
from swarm.core.hashes import PieceLayerFetcher, PieceLayerServer, tree_layers, verify_hashes
from swarm.core.metainfo_v2 import PieceChecks
from swarm.errors import ProtocolError, StorageError
from swarm.parts.completion import MAX_SUSPECTS
from swarm.parts.pool import BAN_STRIKES

if TYPE_CHECKING:
    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: Hash requests sent to one peer per call (a file of 2**20 pieces is 2,048 of them).
MAX_ASK = 64


class HashExchange:
    """The torrent's side of BEP 52 ``hash request`` / ``hashes`` / ``hash reject``."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        meta = torrent.meta
        self._files = [(f.pieces_root, f.length) for f in meta.files if f.pieces_root is not None]
        #: each file's first piece (v2 files start on a piece boundary) and length
        self._file_at = {
            f.pieces_root: (f.offset // meta.piece_length, f.length)
            for f in meta.files if f.pieces_root is not None
        }
        self._hashing: set[PeerConnection] = set()  # peers whose block request is being hashed
        #: block-hash requests out for failed pieces: request -> (piece, peers asked so far)
        self._blaming: dict[wire.HashRequest, tuple[int, set[PeerConnection]]] = {}
        self._server = PieceLayerServer(meta.piece_layers, self._files, meta.piece_length)
        self.fetcher: PieceLayerFetcher | None = None
        self._fetching: set[bytes] = set()
        if meta.version == 2:
            missing = set(PieceChecks(meta).layers_missing)
            self._fetching = missing
            if missing:
                self.fetcher = PieceLayerFetcher(
                    [(root, n) for root, n in self._files if root in missing], meta.piece_length
                )
        #: set once no piece layer is missing (at once unless some are fetched)
        self.layers_ready = asyncio.Event()
        if self.fetcher is None:
            self.layers_ready.set()

    @property
    def waiting(self) -> bool:
        """Piece layers are still being fetched: pieces cannot be verified yet."""
        return self.fetcher is not None

    @property
    def layers_missing(self) -> int:
        """Files whose piece layer is still being fetched (for the stall diagnosis)."""
        if self.fetcher is None:
            return 0
        return sum(1 for root in self._fetching if self.fetcher.piece_layer(root) is None)

    # ------------------------------------------------------------ serving

    def on_hash_request(self, peer: PeerConnection, m: wire.HashRequest) -> None:
        """Answer from the piece layers we hold, or a piece's block hashes from its
        data; reject the rest (roots we lack a layer for, pieces we lack, a second
        block request while one is hashed) and everything while the peer does not read."""
        reject = wire.HashReject(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers)
        if peer.write_paused:
            reply: wire.Hashes | wire.HashReject = reject
        elif (piece := self._server.block_piece(m)) is not None:
            first, _ = self._file_at[m.pieces_root]
            if peer in self._hashing or not self.torrent.have[first + piece]:
                reply = reject
            else:
                self._hashing.add(peer)
                self.torrent.spawn(self._answer_blocks(peer, m, piece))
                return
        else:
            reply = self._server.answer(m)
        peer.send(wire.encode(reply))

    async def _answer_blocks(self, peer: PeerConnection, m: wire.HashRequest, piece: int) -> None:
        """Read piece ``piece`` of the request's file, hash its 16 KiB blocks and
        answer in a worker thread (libtorrent asks after a piece failed its check)."""
        t = self.torrent
        first, length = self._file_at[m.pieces_root]
        index = first + piece
        real = min(t.meta.piece_length, length - piece * t.meta.piece_length)  # the file's bytes
        server = self._server
        reply: wire.Hashes | wire.HashReject
        try:
            data = memoryview(await t.storage.read_block(index, 0, t.meta.piece_size(index)))[:real]
            reply = await asyncio.get_running_loop().run_in_executor(
                t.session.executor, lambda: server.answer_blocks(m, merkle.leaf_hashes(data))
            )
        except StorageError as exc:
            log.info("%s: cannot read piece %d for block hashes: %s", t.meta.name, index, exc)
            reply = wire.HashReject(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers)
        finally:
            self._hashing.discard(peer)
        if not peer.closed:
            peer.send(wire.encode(reply))

    # ------------------------------------------------------------ fetching

    def ask(self, peer: PeerConnection, now: float | None = None) -> None:
        """Send ``peer`` the hash requests nobody else is answering."""
        fetcher = self.fetcher
        if fetcher is None or peer.closed:
            return
        now = time.monotonic() if now is None else now
        for _ in range(MAX_ASK):
            req = fetcher.next_request(peer, now)
            if req is None:
                return
            peer.send(wire.encode(req))

    def ask_all(self, now: float | None = None) -> None:
        for p in list(self.torrent.peers):
            self.ask(p, now)

    def on_hashes(self, peer: PeerConnection, m: wire.Hashes) -> None:
        if m.request in self._blaming:
            self._on_block_hashes(peer, m)
            return
        if self.fetcher is None:
            return  # late answers once every layer is in
        try:
            self.fetcher.on_hashes(m)
        except ProtocolError as exc:
            self._bad_hashes(peer, exc)
            self.fetcher.peer_gone(peer)
            self.ask_all()
            return
        if self.fetcher.done:
            self._layers_complete()
        else:
            self.ask(peer)

    def _bad_hashes(self, peer: PeerConnection, exc: ProtocolError) -> None:
        """A proof that misses the root has no innocent reading: banned at once."""
        self.torrent.pool.strike(peer, BAN_STRIKES)
        peer.close(f"bad hashes: {exc}", warn=True)

    def on_hash_reject(self, peer: PeerConnection, m: wire.HashReject) -> None:
        req = wire.HashRequest(m.pieces_root, m.base_layer, m.index, m.length, m.proof_layers)
        if req in self._blaming:
            self._ask_blocks(req)  # someone else, then
            return
        if self.fetcher is not None:
            self.fetcher.on_reject(peer, m)
            self.ask_all()

    def peer_closed(self, peer: PeerConnection) -> None:
        for req, (_, asked) in list(self._blaming.items()):
            if peer in asked:
                self._ask_blocks(req)  # its answer will not come: another peer
        if self.fetcher is not None:
            self.fetcher.peer_gone(peer)
            self.ask_all()

    # ------------------------------------------------------------ blame

    def blame_blocks(self, index: int) -> None:
        """Piece ``index`` of a v2-only torrent failed its check and came from several
        peers: ask a peer for its block hashes (BEP 52 base layer 0, proof to the
        pieces root) so that the sender of the bad block is found now, not only once
        a good copy passes (``PieceCompletion.suspects`` keeps the bad copy)."""
        t = self.torrent
        per_piece = t.meta.piece_length // merkle.BLOCK_SIZE
        if t.meta.version != 2 or per_piece == 1:
            return  # a hybrid's v1 peers may not speak BEP 52; a one-block piece has one sender
        for root, (first, length) in self._file_at.items():
            pieces = -(-length // t.meta.piece_length)
            if first <= index < first + pieces and tree_layers(length) > 0:
                run = min(per_piece, merkle.next_pow2(merkle.block_count(length)))
                if run <= wire.MAX_HASHES:
                    req = wire.HashRequest(root, 0, (index - first) * per_piece, run, tree_layers(length) - 1)
                    self._blaming[req] = (index, set())
                    while len(self._blaming) > MAX_SUSPECTS:  # unanswered ones: the oldest go
                        del self._blaming[next(iter(self._blaming))]
                    self._ask_blocks(req)
                return

    def _ask_blocks(self, req: wire.HashRequest) -> None:
        """Send ``req`` to a peer not asked yet that has the piece (one that sent none of
        it first); forget it when nobody is left."""
        index, asked = self._blaming[req]
        senders = set(self.torrent.completion.suspects.get(index, (b"", {}))[1].values())
        peers = [
            p for p in self.torrent.peers
            if p not in asked and not p.closed and p.have is not None and index < len(p.have) and p.have[index]
        ]
        if not peers:
            del self._blaming[req]
            return
        peer = min(peers, key=lambda p: p in senders)
        asked.add(peer)
        peer.send(wire.encode(req))

    def _on_block_hashes(self, peer: PeerConnection, m: wire.Hashes) -> None:
        index, _ = self._blaming.pop(m.request)
        first, length = self._file_at[m.pieces_root]
        try:
            good = verify_hashes(m, m.pieces_root, length)
        except ProtocolError as exc:
            self._bad_hashes(peer, exc)
            return
        suspect = self.torrent.completion.suspects.get(index)
        if suspect is not None:
            piece_length = self.torrent.meta.piece_length
            real = min(piece_length, length - (index - first) * piece_length)  # the file's bytes
            self.torrent.spawn(self._find_liars(index, suspect[0], real, suspect[1], good))

    async def _find_liars(
        self, index: int, bad: bytes, real: int, senders: dict[int, PeerConnection], good: list[bytes]
    ) -> None:
        """Hash the failed copy's blocks (its first ``real`` bytes, the file's) in a worker
        thread; the senders of those that differ from ``good`` are banned, and the copy
        is no longer needed."""
        t = self.torrent
        mine = await asyncio.get_running_loop().run_in_executor(
            t.session.executor, merkle.leaf_hashes, memoryview(bad)[:real]
        )
        liars = {
            p for begin, p in senders.items()
            if begin // merkle.BLOCK_SIZE < len(good)
            and mine[begin // merkle.BLOCK_SIZE] != good[begin // merkle.BLOCK_SIZE]
        }
        if liars and t.completion.suspects.get(index, (b"", {}))[0] is bad:
            del t.completion.suspects[index]
            for p in liars:
                log.info("%s: piece %d: %s sent a block that is not the torrent's", t.meta.name, index, p.name())
                t.completion.strike(p, BAN_STRIKES)

    def _layers_complete(self) -> None:
        """Every piece layer verified: storage checks pieces against them, the download starts."""
        assert self.fetcher is not None
        t = self.torrent
        layers = self.fetcher.piece_layers()
        self.fetcher = None
        t.storage.add_piece_layers(layers)
        self.layers_known()
        log.info("%s: piece layers of %d file(s) fetched from peers", t.meta.name, len(layers))
        for p in list(t.peers):
            t.downloader.update_interest(p)
            t.downloader.fill(p)

    def layers_known(self) -> None:
        """Storage's metainfo has more piece layers (fetched, or rebuilt from
        the data by a recheck): the torrent takes it, they are served, and
        fetching stops if nothing is missing any more."""
        t = self.torrent
        meta = t.storage.meta
        t.meta = meta
        self._server = PieceLayerServer(meta.piece_layers, self._files, meta.piece_length)
        if self.fetcher is not None and not PieceChecks(meta).layers_missing:
            self.fetcher = None
        if self.fetcher is None:
            self.layers_ready.set()
