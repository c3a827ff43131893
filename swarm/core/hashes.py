"""BEP 52 hash exchange, sans-IO: answer, check and plan ``hash request``s.

A magnet gives a v2 client the info dictionary (file tree, ``pieces root``s)
but not the ``piece layers``; peers send those in ``hashes`` messages, each
run of hashes followed by the uncle hashes that tie it to the file's root.

API (messages are :mod:`swarm.core.wire`'s ``HashRequest``/``Hashes``/``HashReject``):

* ``tree_layers(file_length) -> int``: layers above the blocks (root height).
* ``check_request(req, file_length) -> str | None``: why a request does not fit
  a file's tree (answer it with a ``HashReject``), None when it does.
* ``HashServer(layer, base_layer, file_length)``: one full layer of a file's
  tree we hold (the piece layer from the metainfo, or the block hashes);
  ``.root`` and ``.answer(req) -> Hashes | HashReject``.
  ``answer_request(req, layer, base_layer, file_length)`` does it once.
* ``PieceLayerServer(piece_layers, files, piece_length)``: a seed's answers
  for a whole torrent from its ``piece layers``: ``.answer(req)``;
  ``.block_piece(req)`` names the piece a block-layer request is about, and
  ``.answer_blocks(req, leaves)`` answers it from that piece's block hashes.
* ``verify_hashes(msg, pieces_root, file_length) -> list[bytes]``: the real
  (unpadded) base hashes of a ``hashes`` answer once its proof climbs to the
  file's ``pieces_root`` (which ``msg.pieces_root`` must name); ProtocolError otherwise.
* ``PieceLayerFetcher(files, piece_length)``: which piece-layer requests to
  send next (``next_request(peer, now)``), fed with ``on_hashes(msg)`` /
  ``on_reject`` / ``peer_gone``; ``piece_layers()`` is the metainfo-shaped
  ``{pieces root: concatenated hashes}`` once ``done``.

Requests follow libtorrent (``hash_picker.cpp``): the piece layer in chunks of
512 hashes at multiples of 512 (the last chunk rounded up to a power of two,
at least 2), ``proof_layers`` reaching just below the root so every answer is
checked against ``pieces root`` alone. Layers count from the blocks up
(0 = blocks, piece layer = log2(piece_length / 16 KiB)).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from swarm.core import merkle
from swarm.core.wire import MAX_HASHES, Hashes, HashReject, HashRequest, hash_proof_count
from swarm.errors import ProtocolError

#: Seconds before a request nobody answered may go to another peer.
REQUEST_TIMEOUT = 30.0


def tree_layers(file_length: int) -> int:
    """Height of a file's root above its blocks (0 for a one-block file)."""
    return merkle.log2(merkle.next_pow2(merkle.block_count(file_length)))


def layer_width(file_length: int, layer: int) -> int:
    """Real (unpadded) nodes of a file's tree at ``layer``."""
    return -(-merkle.block_count(file_length) // (1 << layer))


def check_request(req: HashRequest, file_length: int) -> str | None:
    """Why ``req`` does not fit the tree of a file of ``file_length`` bytes,
    or None. The same rules as libtorrent's ``validate_hash_request`` plus
    BEP 52's alignment and size: ``length`` a power of two up to 512 (1 is
    accepted because libtorrent asks for it at the tail of a 513-piece file),
    ``index`` a multiple of it, the run inside the padded layer, and the
    proof no higher than the layer below the root."""
    if file_length <= 0:
        return "empty file"
    layers = tree_layers(file_length)
    if req.base_layer >= layers:
        return f"base layer {req.base_layer} at or above the root ({layers})"
    length = req.length
    if length < 1 or length > MAX_HASHES or length & (length - 1):
        return f"length {length} is not a power of two up to {MAX_HASHES}"
    if req.index % length:
        return f"index {req.index} not a multiple of length {length}"
    width = 1 << (layers - req.base_layer)
    if req.index + length > width:
        return f"hashes {req.index}+{length} past the layer's {width}"
    if req.proof_layers >= layers - req.base_layer:
        return f"{req.proof_layers} proof layers reach above the root"
    return None


def _reject(req: HashRequest) -> HashReject:
    return HashReject(req.pieces_root, req.base_layer, req.index, req.length, req.proof_layers)


class HashServer:
    """One full layer of a file's tree, with everything above it computed
    once, to answer hash requests for that layer (seeding side)."""

    __slots__ = ("base_layer", "file_length", "_tree")

    def __init__(self, layer: Sequence[bytes], base_layer: int, file_length: int) -> None:
        want = layer_width(file_length, base_layer)
        if len(layer) != want or base_layer >= tree_layers(file_length) or base_layer < 0:
            raise ValueError(f"layer {base_layer} of this file has {want} nodes, not {len(layer)}")
        self.base_layer = base_layer
        self.file_length = file_length
        self._tree = merkle.layers(layer, base_layer)

    @property
    def root(self) -> bytes:
        """The ``pieces root`` this layer hashes up to."""
        return self._tree[-1][0]

    def node(self, index: int) -> bytes:
        """Node ``index`` of the layer (padding past the real ones)."""
        nodes = self._tree[0]
        return nodes[index] if index < len(nodes) else merkle.pad_hash(self.base_layer)

    def uncles(self, index: int, num: int) -> list[bytes]:
        """``num`` uncle hashes of node ``index`` of the layer, lowest first."""
        return merkle.uncles(self._tree, 0, index, 1, num, self.base_layer)

    def answer(self, req: HashRequest) -> Hashes | HashReject:
        """The ``hashes`` answer to ``req`` (run, then uncles lowest first, in
        libtorrent's order), or a reject if it is not for this file and layer
        or does not fit the tree."""
        if (
            req.pieces_root != self.root
            or req.base_layer != self.base_layer
            or check_request(req, self.file_length) is not None
        ):
            return _reject(req)
        nodes = self._tree[0]
        pad = merkle.pad_hash(self.base_layer)
        run = [
            nodes[i] if i < len(nodes) else pad for i in range(req.index, req.index + req.length)
        ]
        proof = merkle.uncles(
            self._tree,
            0,
            req.index,
            req.length,
            hash_proof_count(req.length, req.proof_layers),
            self.base_layer,
        )
        return Hashes(
            req.pieces_root,
            req.base_layer,
            req.index,
            req.length,
            req.proof_layers,
            tuple(run + proof),
        )


def answer_request(
    req: HashRequest, layer: Sequence[bytes], base_layer: int, file_length: int
) -> Hashes | HashReject:
    """One-off :meth:`HashServer.answer` (a seed answering many should keep a HashServer)."""
    return HashServer(layer, base_layer, file_length).answer(req)


class PieceLayerServer:
    """Answers hash requests for a torrent's piece layers (a seed, or a
    leecher once it has them). ``piece_layers`` is shaped like a .torrent's
    (``{pieces root: concatenated hashes}``), ``files`` are ``(pieces_root,
    length)``; each file's tree is built on its first request. Requests for
    unknown roots, other layers or files of one piece are rejected."""

    __slots__ = ("_layers", "_lengths", "_all_lengths", "_base", "_servers", "piece_length")

    def __init__(
        self,
        piece_layers: Mapping[bytes, bytes],
        files: Iterable[tuple[bytes, int]],
        piece_length: int,
    ) -> None:
        self._layers = piece_layers
        self.piece_length = piece_length
        self._all_lengths = {root: length for root, length in files if length > 0}
        self._lengths = {root: length for root, length in self._all_lengths.items() if length > piece_length}
        self._base = merkle.log2(piece_length // merkle.BLOCK_SIZE)
        self._servers: dict[bytes, HashServer] = {}

    def answer(self, req: HashRequest) -> Hashes | HashReject:
        if req.base_layer != self._base:
            return _reject(req)
        server = self._server(req.pieces_root)
        return _reject(req) if server is None else server.answer(req)

    def _server(self, pieces_root: bytes) -> HashServer | None:
        server = self._servers.get(pieces_root)
        if server is None:
            raw = self._layers.get(pieces_root)
            length = self._lengths.get(pieces_root)
            if raw is None or length is None:
                return None
            layer = [raw[i : i + merkle.HASH_SIZE] for i in range(0, len(raw), merkle.HASH_SIZE)]
            server = self._servers[pieces_root] = HashServer(layer, self._base, length)
        return server

    def block_piece(self, req: HashRequest) -> int | None:
        """For a block-layer request (base layer 0, below the piece layer): which
        piece of its file it covers, or None if it is no such request, does not
        fit the file's tree or spans more than one piece (each answer costs the
        server a read and a hash of one piece, no more)."""
        length = self._all_lengths.get(req.pieces_root)
        if req.base_layer != 0 or self._base == 0 or length is None:
            return None
        if check_request(req, length) is not None:
            return None
        per_piece = 1 << self._base
        if req.length > per_piece or req.index >= merkle.block_count(length):
            return None
        return req.index // per_piece

    def answer_blocks(self, req: HashRequest, leaves: Sequence[bytes]) -> Hashes | HashReject:
        """The ``hashes`` answer to a block-layer request (see ``block_piece``)
        from ``leaves``, the block hashes of that piece's data. The proof climbs
        inside the piece, then along the piece layer; a reject if ``leaves`` do
        not hash to what the piece layer (or a one-piece file's root) says."""
        piece = self.block_piece(req)
        if piece is None:
            return _reject(req)
        length = self._all_lengths[req.pieces_root]
        per_piece = 1 << self._base
        width = min(per_piece, merkle.next_pow2(merkle.block_count(length)))
        if not 0 < len(leaves) <= width:
            return _reject(req)
        subtree = merkle.layers([*leaves, *[merkle.ZERO_HASH] * (width - len(leaves))])
        server = self._server(req.pieces_root)
        if length <= self.piece_length:
            expected = req.pieces_root
        elif server is None:
            return _reject(req)  # no piece layer for that file (yet)
        else:
            expected = server.node(piece)
        if subtree[-1][0] != expected:
            return _reject(req)  # our data no longer matches (changed on disk)
        start = req.index - piece * per_piece
        num = hash_proof_count(req.length, req.proof_layers)
        inside = min(num, merkle.log2(width) - merkle.log2(req.length))
        proof = merkle.uncles(subtree, 0, start, req.length, inside)
        if num > inside:
            assert server is not None  # a one-piece file's proof ends at its root (check_request)
            proof += server.uncles(piece, num - inside)
        run = subtree[0][start : start + req.length]
        return Hashes(req.pieces_root, 0, req.index, req.length, req.proof_layers, tuple(run + proof))


def verify_hashes(msg: Hashes, pieces_root: bytes, file_length: int) -> list[bytes]:
    """The base hashes of ``msg`` that belong to the file (padding dropped),
    once the run and its uncles hash up to the file's ``pieces_root``.

    The proof must climb all the way to the root (the only node a magnet
    knows): ProtocolError for a proof that stops short, a request that does
    not fit the file, or hashes that do not match.
    """
    if msg.pieces_root != pieces_root:
        raise ProtocolError("hashes answer for another file")
    req = msg.request
    reason = check_request(req, file_length)
    if reason is not None:
        raise ProtocolError(f"hashes answer that fits no request: {reason}")
    uncles = hash_proof_count(req.length, req.proof_layers)
    if len(msg.hashes) != req.length + uncles:
        raise ProtocolError(f"hashes answer with {len(msg.hashes)} hashes")
    top = req.base_layer + merkle.log2(req.length) + uncles
    if top != tree_layers(file_length):
        raise ProtocolError("hashes proof does not reach the pieces root")
    run, proof = msg.hashes[: req.length], msg.hashes[req.length :]
    if not merkle.verify_proof(run, req.base_layer, req.index, req.length, proof, pieces_root):
        raise ProtocolError("hashes do not match the pieces root")
    real = max(0, min(req.length, layer_width(file_length, req.base_layer) - req.index))
    return list(run[:real])


# ----------------------------------------------------------------- fetching


@dataclass(slots=True)
class _Chunk:
    """One request's worth (up to 512 hashes) of a file's piece layer."""

    request: HashRequest
    hashes: list[bytes] | None = None
    peer: Hashable | None = None  # who has it in flight
    sent_at: float = 0.0
    rejected_by: set[Hashable] = field(default_factory=set)


@dataclass(slots=True)
class _FileLayer:
    pieces_root: bytes
    file_length: int
    chunks: list[_Chunk]


class PieceLayerFetcher:
    """Plans the hash requests that fetch the piece layers a magnet lacks.

    ``files`` are ``(pieces_root, length)`` of the torrent's files; only those
    longer than a piece have a piece layer. The clock is passed in (``now``),
    peers are any hashable key. One request per chunk is in flight at a time;
    it goes to another peer after a reject, ``peer_gone`` or ``timeout``
    seconds; a peer that rejected a chunk is not asked for it again.
    """

    def __init__(
        self,
        files: Iterable[tuple[bytes, int]],
        piece_length: int,
        timeout: float = REQUEST_TIMEOUT,
    ) -> None:
        piece_layer = merkle.log2(piece_length // merkle.BLOCK_SIZE)
        if piece_length % merkle.BLOCK_SIZE:
            raise ValueError("piece length is not a multiple of 16 KiB")
        self.piece_length = piece_length
        self.timeout = timeout
        self._files: dict[bytes, _FileLayer] = {}
        for root, length in files:
            if length <= piece_length or root in self._files:
                continue
            pieces = -(-length // piece_length)
            proof_layers = tree_layers(length) - piece_layer - 1
            chunks = []
            for index in range(0, pieces, MAX_HASHES):
                count = min(MAX_HASHES, max(2, merkle.next_pow2(pieces - index)))
                req = HashRequest(root, piece_layer, index, count, proof_layers)
                chunks.append(_Chunk(req))
            self._files[root] = _FileLayer(root, length, chunks)

    @property
    def done(self) -> bool:
        """Every piece layer is known."""
        return all(c.hashes is not None for f in self._files.values() for c in f.chunks)

    def next_request(self, peer: Hashable, now: float) -> HashRequest | None:
        """The next request to send ``peer`` (now marked in flight), or None."""
        for f in self._files.values():
            for chunk in f.chunks:
                if chunk.hashes is not None or peer in chunk.rejected_by:
                    continue
                if chunk.peer is not None and now - chunk.sent_at < self.timeout:
                    continue
                chunk.peer, chunk.sent_at = peer, now
                return chunk.request
        return None

    def _chunk(self, req: HashRequest) -> _Chunk | None:
        f = self._files.get(req.pieces_root)
        if f is None:
            return None
        for chunk in f.chunks:
            if chunk.request == req:
                return chunk
        return None

    def on_hashes(self, msg: Hashes) -> bool:
        """Take an answer: True if it filled a chunk, False if it answers
        nothing we asked (late duplicate); ProtocolError if it is wrong."""
        chunk = self._chunk(msg.request)
        if chunk is None:
            return False
        f = self._files[msg.pieces_root]
        hashes = verify_hashes(msg, f.pieces_root, f.file_length)
        if chunk.hashes is None:
            chunk.hashes = hashes
        chunk.peer = None
        return True

    def on_reject(self, peer: Hashable, msg: HashReject) -> None:
        """``peer`` will not answer: ask someone else for that chunk."""
        chunk = self._chunk(
            HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length, msg.proof_layers)
        )
        if chunk is not None:
            chunk.rejected_by.add(peer)
            if chunk.peer == peer:
                chunk.peer = None

    def peer_gone(self, peer: Hashable) -> None:
        """``peer`` disconnected: its requests in flight go to others."""
        for f in self._files.values():
            for chunk in f.chunks:
                chunk.rejected_by.discard(peer)
                if chunk.peer == peer:
                    chunk.peer = None

    def piece_layer(self, pieces_root: bytes) -> list[bytes] | None:
        """A file's whole piece layer once every chunk of it is in."""
        f = self._files.get(pieces_root)
        if f is None or any(c.hashes is None for c in f.chunks):
            return None
        return [h for c in f.chunks for h in (c.hashes or [])]

    def piece_layers(self) -> dict[bytes, bytes]:
        """``{pieces root: concatenated hashes}``, like a .torrent's ``piece layers``,
        for the files whose layer is complete."""
        out = {}
        for root in self._files:
            layer = self.piece_layer(root)
            if layer is not None:
                out[root] = b"".join(layer)
        return out
