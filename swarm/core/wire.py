"""Peer wire codec: BEP 3, BEP 6 (fast extension), BEP 10 framing, BEP 5 port,
BEP 52 hash exchange (``hash request`` 21, ``hashes`` 22, ``hash reject`` 23).

Sans-IO: bytes in, message objects out; encoders return bytes. The decoder is
built for the 16 KiB block path (65,536 blocks per GiB): a piece message's
block is copied once, from the receive buffer (or straight from the kernel,
see ``direct``) into a slot the engine hands out through ``block_sink``.

Validation raises :class:`swarm.errors.ProtocolError` as soon as a length
prefix or header is known to be bad, before its payload is buffered, so a
hostile peer can never make us hold more than one legal message.

Limits (why each number):

* piece: ``1 <= len(block) <= max_block`` (default 128 KiB: libtorrent and
  others refuse bigger requests; we request 16 KiB);
* bitfield: exactly ``ceil(num_pieces / 8)`` bytes with spare bits clear once
  the torrent is known; before that (magnet) at most ``MAX_BITFIELD_UNKNOWN``
  raw bytes, for the engine to check later with ``Bitfield.from_bytes``;
* extended: payload at most ``max_extended`` (default 1 MiB; ut_metadata data
  messages are 16 KiB + a small dict, extended handshakes a few hundred bytes);
* hash request / hash reject: exactly 49 bytes (id + 48-byte header); their
  fields are checked against the file by :mod:`swarm.core.hashes` (a bad
  request earns a reject, not a disconnect, as in libtorrent);
* hashes: the header's ``length`` a power of two <= ``MAX_HASHES`` (512, BEP
  52's limit), ``proof_layers`` < ``MAX_PROOF_LAYERS`` and the payload exactly
  ``length`` plus ``hash_proof_count(length, proof_layers)`` hashes;
* unknown message ids are skipped (never buffered) if their length is at most
  ``max_block + 9``; longer ones are a protocol error.

Whether fast-extension or extended messages are allowed at all depends on the
handshake; that check belongs to the engine, which knows both sides' bits.
"""

from __future__ import annotations

import hashlib
import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass

from swarm.errors import ProtocolError

PROTOCOL = b"\x13BitTorrent protocol"
HANDSHAKE_LEN = 68
HANDSHAKE_HEAD_LEN = 48  # protocol + reserved + info_hash: enough to pick the torrent
BLOCK_SIZE = 16384
MAX_BLOCK = 131072
MAX_EXTENDED = 1 << 20
#: Raw bitfield bytes accepted before the piece count is known (2**20 pieces).
MAX_BITFIELD_UNKNOWN = 1 << 17

# Message ids.
CHOKE = 0
UNCHOKE = 1
INTERESTED = 2
NOT_INTERESTED = 3
HAVE = 4
BITFIELD = 5
REQUEST = 6
PIECE = 7
CANCEL = 8
PORT = 9
SUGGEST = 0x0D
HAVE_ALL = 0x0E
HAVE_NONE = 0x0F
REJECT = 0x10
ALLOWED_FAST = 0x11
EXTENDED = 20
HASH_REQUEST = 21
HASHES = 22
HASH_REJECT = 23

HASH_SIZE = 32
#: Base hashes a BEP 52 ``hashes`` message may carry (BEP 52 caps ``length`` at 512).
MAX_HASHES = 512
#: Bound on ``proof layers``: a tree over 2**64 bytes of 16 KiB blocks has 50 layers.
MAX_PROOF_LAYERS = 64
_HASH_HEADER = 48  # pieces root + base layer + index + length + proof layers


# --------------------------------------------------------------------------
# Handshake


#: BEP 52 "upgrade" bit (reserved byte 7): this peer speaks v2 (hash messages).
#: A handshake carrying the truncated v2 info-hash is v2 by itself; libtorrent
#: sets the bit only on a v1-hash connection of a hybrid torrent (an offer to
#: upgrade), and treats an incoming handshake with it set as a v2 peer.
V2_BIT = 0x10


def make_reserved(
    extensions: bool = True, fast: bool = True, dht: bool = False, v2: bool = False
) -> bytes:
    r = bytearray(8)
    if extensions:
        r[5] |= 0x10
    if fast:
        r[7] |= 0x04
    if dht:
        r[7] |= 0x01
    if v2:
        r[7] |= V2_BIT
    return bytes(r)


def with_v2(reserved: bytes, on: bool = True) -> bytes:
    """``reserved`` with the BEP 52 upgrade bit set (or cleared), other bits kept."""
    if len(reserved) != 8:
        raise ValueError("reserved bytes must be 8 bytes")
    r = bytearray(reserved)
    r[7] = r[7] | V2_BIT if on else r[7] & ~V2_BIT & 0xFF
    return bytes(r)


def supports_v2(reserved: bytes) -> bool:
    """True when a peer's reserved bytes carry the BEP 52 upgrade bit."""
    return len(reserved) == 8 and bool(reserved[7] & V2_BIT)


@dataclass(slots=True, frozen=True)
class Handshake:
    info_hash: bytes
    peer_id: bytes
    reserved: bytes = make_reserved()

    def encode(self) -> bytes:
        if len(self.info_hash) != 20 or len(self.peer_id) != 20 or len(self.reserved) != 8:
            raise ValueError("handshake fields must be 20, 20 and 8 bytes")
        return PROTOCOL + self.reserved + self.info_hash + self.peer_id

    @property
    def extensions(self) -> bool:
        return bool(self.reserved[5] & 0x10)

    @property
    def fast(self) -> bool:
        return bool(self.reserved[7] & 0x04)

    @property
    def dht(self) -> bool:
        return bool(self.reserved[7] & 0x01)

    @property
    def v2(self) -> bool:
        """The peer set the BEP 52 upgrade bit."""
        return supports_v2(self.reserved)


def parse_handshake(data: bytes) -> Handshake:
    """Parse a complete 68-byte handshake."""
    if len(data) != HANDSHAKE_LEN:
        raise ProtocolError(f"handshake of {len(data)} bytes, expected {HANDSHAKE_LEN}")
    data = bytes(data)
    if data[:20] != PROTOCOL:
        raise ProtocolError("not a BitTorrent handshake")
    return Handshake(data[28:48], data[48:68], data[20:28])


class HandshakeDecoder:
    """Incremental handshake reader.

    ``get_buffer`` never offers more than the bytes still missing, so on the
    BufferedProtocol path no message bytes are read early: once ``done``,
    switch the protocol to a :class:`MessageDecoder`. With ``feed`` the bytes
    past the handshake are returned, to be fed to the MessageDecoder.

    For incoming connections, ``info_hash`` is available after 48 bytes (check
    ``head_done``): look the torrent up and answer before the peer id arrives.
    """

    __slots__ = ("_buf", "_mv", "_n")

    def __init__(self) -> None:
        self._buf = bytearray(HANDSHAKE_LEN)
        self._mv = memoryview(self._buf)
        self._n = 0

    @property
    def head_done(self) -> bool:
        return self._n >= HANDSHAKE_HEAD_LEN

    @property
    def done(self) -> bool:
        return self._n == HANDSHAKE_LEN

    @property
    def reserved(self) -> bytes:
        if not self.head_done:
            raise ProtocolError("handshake head not received yet")
        return bytes(self._buf[20:28])

    @property
    def info_hash(self) -> bytes:
        if not self.head_done:
            raise ProtocolError("handshake head not received yet")
        return bytes(self._buf[28:48])

    @property
    def handshake(self) -> Handshake:
        if not self.done:
            raise ProtocolError("handshake not complete")
        return parse_handshake(bytes(self._buf))

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        return self._mv[self._n :]

    def buffer_updated(self, nbytes: int) -> None:
        before = self._n
        self._n += nbytes
        # Check the protocol string as soon as it is in: drop HTTP probes early.
        if before < 20:
            upto = min(self._n, 20)
            if self._buf[before:upto] != PROTOCOL[before:upto]:
                raise ProtocolError("not a BitTorrent handshake")

    def feed(self, data: bytes) -> bytes:
        """Consume what the handshake still needs; return the rest."""
        take = min(len(data), HANDSHAKE_LEN - self._n)
        if take:
            self._mv[self._n : self._n + take] = data[:take]
            self.buffer_updated(take)
        return bytes(data[take:])


# --------------------------------------------------------------------------
# Messages


@dataclass(slots=True)
class KeepAlive:
    pass


@dataclass(slots=True)
class Choke:
    pass


@dataclass(slots=True)
class Unchoke:
    pass


@dataclass(slots=True)
class Interested:
    pass


@dataclass(slots=True)
class NotInterested:
    pass


@dataclass(slots=True)
class Have:
    index: int


@dataclass(slots=True)
class BitfieldMsg:
    data: bytes


@dataclass(slots=True)
class Request:
    index: int
    begin: int
    length: int


@dataclass(slots=True)
class Piece:
    """A block. ``data`` is None when ``block_sink`` took it (already in place)."""

    index: int
    begin: int
    data: bytes | None


@dataclass(slots=True)
class Cancel:
    index: int
    begin: int
    length: int


@dataclass(slots=True)
class Port:
    port: int


@dataclass(slots=True)
class Suggest:
    index: int


@dataclass(slots=True)
class HaveAll:
    pass


@dataclass(slots=True)
class HaveNone:
    pass


@dataclass(slots=True)
class RejectRequest:
    index: int
    begin: int
    length: int


@dataclass(slots=True)
class AllowedFast:
    index: int


@dataclass(slots=True)
class Extended:
    ext_id: int
    payload: bytes


@dataclass(slots=True, frozen=True)
class HashRequest:
    """BEP 52: ask for ``length`` hashes of ``base_layer`` (0 = blocks) of the
    file whose tree root is ``pieces_root``, from ``index``, plus the uncle
    hashes of ``proof_layers`` layers above (see ``hash_proof_count``)."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(slots=True, frozen=True)
class HashReject:
    """BEP 52: the peer will not answer the hash request with these fields."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(slots=True, frozen=True)
class Hashes:
    """BEP 52 answer: the request's fields, then ``length`` base hashes
    followed by the uncle hashes, lowest layer first."""

    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: tuple[bytes, ...]

    @property
    def base(self) -> tuple[bytes, ...]:
        """The requested run of hashes."""
        return self.hashes[: self.length]

    @property
    def proof(self) -> tuple[bytes, ...]:
        """The uncle hashes after the run, lowest first."""
        return self.hashes[self.length :]

    @property
    def request(self) -> HashRequest:
        """The request this message answers."""
        return HashRequest(
            self.pieces_root, self.base_layer, self.index, self.length, self.proof_layers
        )


Message = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | BitfieldMsg
    | Request
    | Piece
    | Cancel
    | Port
    | Suggest
    | HaveAll
    | HaveNone
    | RejectRequest
    | AllowedFast
    | Extended
    | HashRequest
    | HashReject
    | Hashes
)

# Field-less messages are immutable in practice: the decoder yields these.
KEEPALIVE = KeepAlive()
_CHOKE = Choke()
_UNCHOKE = Unchoke()
_INTERESTED = Interested()
_NOT_INTERESTED = NotInterested()
_HAVE_ALL = HaveAll()
_HAVE_NONE = HaveNone()

# --------------------------------------------------------------------------
# Encoders

_U32 = struct.Struct(">I")
_HDR = struct.Struct(">IB")
_HDR_I = struct.Struct(">IBI")
_HDR_II = struct.Struct(">IBII")
_HDR_III = struct.Struct(">IBIII")
_HDR_H = struct.Struct(">IBH")
_HDR_B = struct.Struct(">IBB")
_II = struct.Struct(">II")
_III = struct.Struct(">III")
_IIII = struct.Struct(">IIII")

_KEEPALIVE_B = b"\x00\x00\x00\x00"
_CHOKE_B = _HDR.pack(1, CHOKE)
_UNCHOKE_B = _HDR.pack(1, UNCHOKE)
_INTERESTED_B = _HDR.pack(1, INTERESTED)
_NOT_INTERESTED_B = _HDR.pack(1, NOT_INTERESTED)
_HAVE_ALL_B = _HDR.pack(1, HAVE_ALL)
_HAVE_NONE_B = _HDR.pack(1, HAVE_NONE)


def encode_keepalive() -> bytes:
    return _KEEPALIVE_B


def encode_choke() -> bytes:
    return _CHOKE_B


def encode_unchoke() -> bytes:
    return _UNCHOKE_B


def encode_interested() -> bytes:
    return _INTERESTED_B


def encode_not_interested() -> bytes:
    return _NOT_INTERESTED_B


def encode_have_all() -> bytes:
    return _HAVE_ALL_B


def encode_have_none() -> bytes:
    return _HAVE_NONE_B


def encode_have(index: int) -> bytes:
    return _HDR_I.pack(5, HAVE, index)


def encode_bitfield(data: bytes) -> bytes:
    return _HDR.pack(1 + len(data), BITFIELD) + data


def encode_request(index: int, begin: int, length: int) -> bytes:
    return _HDR_III.pack(13, REQUEST, index, begin, length)


def encode_cancel(index: int, begin: int, length: int) -> bytes:
    return _HDR_III.pack(13, CANCEL, index, begin, length)


def encode_reject(index: int, begin: int, length: int) -> bytes:
    return _HDR_III.pack(13, REJECT, index, begin, length)


def encode_port(port: int) -> bytes:
    return _HDR_H.pack(3, PORT, port)


def encode_suggest(index: int) -> bytes:
    return _HDR_I.pack(5, SUGGEST, index)


def encode_allowed_fast(index: int) -> bytes:
    return _HDR_I.pack(5, ALLOWED_FAST, index)


def encode_extended(ext_id: int, payload: bytes) -> bytes:
    return _HDR_B.pack(2 + len(payload), EXTENDED, ext_id) + payload


def hash_proof_count(length: int, proof_layers: int) -> int:
    """Uncle hashes after the run in a ``hashes`` message: one per layer from
    the run's subtree root up to ``proof_layers`` above the base, i.e.
    max(0, proof_layers - log2(length) + 1), what libtorrent expects
    (``hash_picker::add_hashes``). ``length`` is a power of two."""
    return max(0, proof_layers - (length.bit_length() - 1) + 1)


def _hash_header(length: int, mid: int, root: bytes, fields: tuple[int, int, int, int]) -> bytes:
    if len(root) != HASH_SIZE:
        raise ValueError("a pieces root is 32 bytes")
    return _HDR.pack(length, mid) + root + _IIII.pack(*fields)


def encode_hash_request(
    pieces_root: bytes, base_layer: int, index: int, length: int, proof_layers: int
) -> bytes:
    return _hash_header(
        1 + _HASH_HEADER, HASH_REQUEST, pieces_root, (base_layer, index, length, proof_layers)
    )


def encode_hash_reject(
    pieces_root: bytes, base_layer: int, index: int, length: int, proof_layers: int
) -> bytes:
    return _hash_header(
        1 + _HASH_HEADER, HASH_REJECT, pieces_root, (base_layer, index, length, proof_layers)
    )


def encode_hashes(
    pieces_root: bytes,
    base_layer: int,
    index: int,
    length: int,
    proof_layers: int,
    hashes: tuple[bytes, ...] | list[bytes],
) -> bytes:
    if any(len(h) != HASH_SIZE for h in hashes):
        raise ValueError("hashes are 32 bytes each")
    head = _hash_header(
        1 + _HASH_HEADER + HASH_SIZE * len(hashes),
        HASHES,
        pieces_root,
        (base_layer, index, length, proof_layers),
    )
    return head + b"".join(hashes)


def piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block: send ``[header, block]`` with writelines."""
    return _HDR_II.pack(9 + length, PIECE, index, begin)


def encode_piece(index: int, begin: int, data: bytes) -> bytes:
    return piece_header(index, begin, len(data)) + data


def encode(msg: Message) -> bytes:
    """Encode any message object (convenience; hot paths call encode_* directly)."""
    match msg:
        case KeepAlive():
            return _KEEPALIVE_B
        case Choke():
            return _CHOKE_B
        case Unchoke():
            return _UNCHOKE_B
        case Interested():
            return _INTERESTED_B
        case NotInterested():
            return _NOT_INTERESTED_B
        case HaveAll():
            return _HAVE_ALL_B
        case HaveNone():
            return _HAVE_NONE_B
        case Have(index):
            return encode_have(index)
        case BitfieldMsg(data):
            return encode_bitfield(data)
        case Request(i, b, n):
            return encode_request(i, b, n)
        case Cancel(i, b, n):
            return encode_cancel(i, b, n)
        case RejectRequest(i, b, n):
            return encode_reject(i, b, n)
        case Piece(i, b, data):
            if data is None:
                raise ValueError("cannot encode a piece whose data went to the sink")
            return encode_piece(i, b, data)
        case Port(port):
            return encode_port(port)
        case Suggest(index):
            return encode_suggest(index)
        case AllowedFast(index):
            return encode_allowed_fast(index)
        case Extended(ext_id, payload):
            return encode_extended(ext_id, payload)
        case HashRequest(root, base, i, n, proof):
            return encode_hash_request(root, base, i, n, proof)
        case HashReject(root, base, i, n, proof):
            return encode_hash_reject(root, base, i, n, proof)
        case Hashes(root, base, i, n, proof, hashes):
            return encode_hashes(root, base, i, n, proof, hashes)
    raise TypeError(f"not a wire message: {msg!r}")


# --------------------------------------------------------------------------
# Decoder

BlockSink = Callable[[int, int, int], "memoryview | None"]
#: Called with (index, begin, length) once a taken block is whole in its slot.
BlockLanded = Callable[[int, int, int], None]

#: Exact length prefix of the fixed-size messages.
_FIXED_LEN = {
    CHOKE: 1,
    UNCHOKE: 1,
    INTERESTED: 1,
    NOT_INTERESTED: 1,
    HAVE: 5,
    REQUEST: 13,
    CANCEL: 13,
    PORT: 3,
    SUGGEST: 5,
    HAVE_ALL: 1,
    HAVE_NONE: 1,
    REJECT: 13,
    ALLOWED_FAST: 5,
}
_SINGLETONS: dict[int, Message] = {
    CHOKE: _CHOKE,
    UNCHOKE: _UNCHOKE,
    INTERESTED: _INTERESTED,
    NOT_INTERESTED: _NOT_INTERESTED,
    HAVE_ALL: _HAVE_ALL,
    HAVE_NONE: _HAVE_NONE,
}
_INDEXED: dict[int, Callable[[int], Message]] = {
    HAVE: Have,
    SUGGEST: Suggest,
    ALLOWED_FAST: AllowedFast,
}
_RANGED: dict[int, Callable[[int, int, int], Message]] = {
    REQUEST: Request,
    CANCEL: Cancel,
    REJECT: RejectRequest,
}
_NAMES = {
    HAVE: "have",
    SUGGEST: "suggest",
    ALLOWED_FAST: "allowed_fast",
    REQUEST: "request",
    CANCEL: "cancel",
    REJECT: "reject",
    PIECE: "piece",
}

_MIN_BUFFER = 256 * 1024
#: Longest legal ``hashes`` message (length prefix value).
_MAX_HASHES_LEN = (
    1 + _HASH_HEADER + HASH_SIZE * (MAX_HASHES + hash_proof_count(1, MAX_PROOF_LAYERS - 1))
)
_MIN_FREE = 64 * 1024


class MessageDecoder:
    """Incremental decoder for the messages after the handshake.

    Two ways in, never mixed on one connection in practice (both are safe):
    ``feed(data)`` and the ``asyncio.BufferedProtocol`` pair
    ``get_buffer(hint)`` / ``buffer_updated(n)``. Each returns the complete
    messages decoded so far; any chunking yields the same messages.

    ``block_sink(index, begin, length)`` is called once per piece message, as
    soon as its 13-byte header is in (the header is validated first). It
    returns a writable memoryview of exactly ``length`` bytes, the block's
    slot in the piece buffer, or None. Taken blocks are copied once into the
    slot and yield ``Piece(index, begin, None)`` when complete. Declined blocks
    (unrequested, duplicate, late after a cancel) are buffered and yielded as
    ``Piece(index, begin, bytes)`` so the engine can count them as waste; the
    same happens for every block when there is no sink.

    ``block_landed(index, begin, length)``, if given, is called instead of
    yielding a message for a taken block that arrived whole within one read
    (the common case), right after its bytes are copied into the slot, in
    stream order with the sink's calls: the engine's per-block bookkeeping
    without a message object or a pass over a list. Blocks split across reads
    are still yielded as ``Piece(index, begin, None)``.

    ``direct=True`` makes ``get_buffer`` return the slot itself while a block
    is incomplete, so the kernel writes the block's tail straight into the
    piece buffer; it costs one extra recv per block (see benchmarks/bench_wire.py).

    A ProtocolError leaves the decoder in an undefined state: drop the peer.
    """

    __slots__ = (
        "_buf",
        "_mv",
        "_start",
        "_end",
        "_slot",
        "_slot_off",
        "_slot_len",
        "_slot_msg",
        "_slot_abandoned",
        "_skip",
        "_declined",
        "_sink",
        "_landed",
        "_direct",
        "max_block",
        "max_extended",
        "num_pieces",
        "piece_length",
        "total_length",
        "_last_piece_size",
        "_bitfield_len",
        "_spare_mask",
        "_max_len",
    )

    def __init__(
        self,
        num_pieces: int | None = None,
        piece_length: int | None = None,
        total_length: int | None = None,
        *,
        max_block: int = MAX_BLOCK,
        max_extended: int = MAX_EXTENDED,
        block_sink: BlockSink | None = None,
        block_landed: BlockLanded | None = None,
        direct: bool = False,
    ) -> None:
        if max_block < 1 or max_extended < 1:
            raise ValueError("max_block and max_extended must be positive")
        self.max_block = max_block
        self.max_extended = max_extended
        self._sink = block_sink
        self._landed = block_landed
        self._direct = direct
        self._buf = bytearray(_MIN_BUFFER)
        self._mv = memoryview(self._buf)
        self._start = 0
        self._end = 0
        self._slot: memoryview | None = None
        self._slot_off = 0
        self._slot_len = 0
        self._slot_msg: Piece | None = None
        self._slot_abandoned = False
        self._skip = 0
        self._declined = False  # the piece message at _start was declined by the sink
        self.num_pieces: int | None = None
        self.piece_length: int | None = None
        self.total_length: int | None = None
        self._last_piece_size = 0
        self._bitfield_len = -1
        self._spare_mask = 0
        self._max_len = 0
        self._update_limits()
        if num_pieces is not None or piece_length is not None or total_length is not None:
            if num_pieces is None or piece_length is None or total_length is None:
                raise ValueError("give num_pieces, piece_length and total_length together")
            self.set_torrent(num_pieces, piece_length, total_length)

    def set_block_sink(self, sink: BlockSink | None) -> None:
        self._sink = sink

    def abandon_block(self, index: int, begin: int) -> bool:
        """The engine gave up the block at ``index``/``begin`` (request timed out,
        peer choked or rejected it): if it is being copied into its sink slot now,
        copy its rest into a throw-away buffer instead. The block is then yielded
        as ``Piece(index, begin, bytes)`` like a declined one; the piece buffer is
        never written again through this decoder. True if the block was landing.
        """
        msg = self._slot_msg
        slot = self._slot
        if slot is None or msg is None or self._slot_abandoned or (msg.index, msg.begin) != (index, begin):
            return False
        scratch = bytearray(self._slot_len)
        scratch[: self._slot_off] = slot[: self._slot_off]
        self._slot = memoryview(scratch)
        self._slot_abandoned = True
        return True

    def _finish_slot(self) -> Piece:
        """The block in ``_slot`` is complete: its message (with the bytes if abandoned)."""
        msg = self._slot_msg
        assert msg is not None and self._slot is not None
        if self._slot_abandoned:
            msg.data = bytes(self._slot)
            self._slot_abandoned = False
        self._slot = self._slot_msg = None
        return msg

    def set_torrent(self, num_pieces: int, piece_length: int, total_length: int) -> None:
        """Enable index/range/bitfield checks (a magnet's metadata arrived)."""
        if num_pieces < 1 or piece_length < 1 or total_length < 1:
            raise ValueError("torrent dimensions must be positive")
        last = total_length - (num_pieces - 1) * piece_length
        if not 0 < last <= piece_length:
            raise ValueError("num_pieces, piece_length and total_length disagree")
        self.num_pieces = num_pieces
        self.piece_length = piece_length
        self.total_length = total_length
        self._last_piece_size = last
        self._bitfield_len = (num_pieces + 7) >> 3
        spare = self._bitfield_len * 8 - num_pieces
        self._spare_mask = (1 << spare) - 1
        self._update_limits()

    def _update_limits(self) -> None:
        bitfield = self._bitfield_len if self._bitfield_len >= 0 else MAX_BITFIELD_UNKNOWN
        self._max_len = max(
            self.max_block + 9, self.max_extended + 2, bitfield + 1, _MAX_HASHES_LEN
        )

    # -- checks -----------------------------------------------------------

    def _check_index(self, mid: int, index: int) -> None:
        n = self.num_pieces
        if n is not None and index >= n:
            raise ProtocolError(f"{_NAMES[mid]} index {index} >= {n} pieces")

    def _check_range(self, mid: int, index: int, begin: int, length: int) -> None:
        if length == 0 or length > self.max_block:
            raise ProtocolError(f"{_NAMES[mid]} of {length} bytes")
        n = self.num_pieces
        if n is not None:
            if index >= n:
                raise ProtocolError(f"{_NAMES[mid]} index {index} >= {n} pieces")
            size = self._last_piece_size if index == n - 1 else self.piece_length
            assert size is not None
            if begin + length > size:
                raise ProtocolError(
                    f"{_NAMES[mid]} {index}:{begin}+{length} past the piece end {size}"
                )

    # -- input ------------------------------------------------------------

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        if self._slot is not None and self._direct:
            return self._slot[self._slot_off :]
        free = len(self._buf) - self._end
        if free < _MIN_FREE:
            self._compact(_MIN_FREE)
        return self._mv[self._end :]

    def _compact(self, need_free: int) -> None:
        """Move unparsed bytes to the front; grow only for an oversized message."""
        start, end = self._start, self._end
        pending = end - start
        size = len(self._buf)
        if pending + need_free > size or (
            size > _MIN_BUFFER and pending + need_free <= _MIN_BUFFER
        ):
            # Grow for an oversized message; shrink back once it has gone.
            grow = pending + need_free > size
            new = bytearray(max(size * 2, pending + need_free) if grow else _MIN_BUFFER)
            new[:pending] = self._mv[start:end]
            self._buf = new
            self._mv = memoryview(new)
        elif pending:
            self._buf[:pending] = self._mv[start:end]
        self._start = 0
        self._end = pending

    def buffer_updated(self, nbytes: int) -> list[Message]:
        if self._slot is not None and self._direct:
            self._slot_off += nbytes
            if self._slot_off < self._slot_len:
                return []
            out: list[Message] = [self._finish_slot()]
            if self._end > self._start:
                out.extend(self._parse())
            return out
        self._end += nbytes
        return self._parse()

    def feed(self, data: bytes) -> list[Message]:
        out: list[Message] = []
        view = memoryview(data)
        total = len(view)
        off = 0
        while off < total:
            buf = self.get_buffer(total - off)
            n = min(len(buf), total - off)
            buf[:n] = view[off : off + n]
            off += n
            out.extend(self.buffer_updated(n))
        return out

    # -- parsing ----------------------------------------------------------

    def _parse(self) -> list[Message]:
        out: list[Message] = []
        buf = self._buf
        mv = self._mv
        pos = self._start
        end = self._end

        if self._skip:
            k = min(self._skip, end - pos)
            self._skip -= k
            pos += k
        if self._slot is not None:
            k = min(self._slot_len - self._slot_off, end - pos)
            off = self._slot_off
            self._slot[off : off + k] = mv[pos : pos + k]
            self._slot_off = off + k
            pos += k
            if self._slot_off == self._slot_len:
                out.append(self._finish_slot())

        unpack_hdr = _HDR.unpack_from
        unpack_ii = _II.unpack_from
        unpack_iii = _III.unpack_from
        max_len = self._max_len
        max_block = self.max_block
        n_pieces = self.num_pieces
        plen = self.piece_length or 0
        last_size = self._last_piece_size
        sink = self._sink
        landed = self._landed
        while self._slot is None and not self._skip:
            avail = end - pos
            if avail < 5:
                if avail == 4:
                    length = _U32.unpack_from(buf, pos)[0]
                    if length == 0:
                        out.append(KEEPALIVE)
                        pos += 4
                        continue
                    if length > max_len:
                        raise ProtocolError(f"message length {length} exceeds {max_len}")
                break
            length, mid = unpack_hdr(buf, pos)
            if length == 0:
                out.append(KEEPALIVE)
                pos += 4
                continue
            if mid == PIECE:
                if length > max_block + 9 or length < 10:
                    raise ProtocolError(f"piece message of length {length}")
                if avail < 13:
                    break
                index, begin = unpack_ii(buf, pos + 5)
                blen = length - 9
                if self._declined:
                    slot = None
                else:
                    if n_pieces is not None and not (
                        index < n_pieces
                        and begin + blen <= (plen if index < n_pieces - 1 else last_size)
                    ):
                        self._check_range(PIECE, index, begin, blen)  # raises
                    slot = sink(index, begin, blen) if sink is not None else None
                if slot is not None:
                    if len(slot) != blen:
                        raise ValueError(f"block sink returned {len(slot)} bytes for {blen}")
                    have = avail - 13
                    if have >= blen:
                        stop = pos + 13 + blen
                        slot[:] = mv[pos + 13 : stop]
                        pos = stop
                        if landed is None:
                            out.append(Piece(index, begin, None))
                        else:
                            landed(index, begin, blen)  # raising leaves us undefined, as ProtocolError does
                        continue
                    slot[:have] = mv[pos + 13 : end]
                    self._slot = slot
                    self._slot_off = have
                    self._slot_len = blen
                    self._slot_msg = Piece(index, begin, None)
                    pos = end
                    break
                stop = pos + 4 + length
                if stop > end:
                    self._declined = True
                    break
                self._declined = False
                out.append(Piece(index, begin, bytes(mv[pos + 13 : stop])))
                pos = stop
                continue

            if mid == REQUEST and length == 13 and avail >= 17:
                # Fast path: a seed decodes one of these per 16 KiB sent.
                index, begin, blen = unpack_iii(buf, pos + 5)
                if not (
                    0 < blen <= max_block
                    and (
                        n_pieces is None
                        or (
                            index < n_pieces
                            and begin + blen <= (plen if index < n_pieces - 1 else last_size)
                        )
                    )
                ):
                    self._check_range(REQUEST, index, begin, blen)  # raises the precise error
                out.append(Request(index, begin, blen))
                pos += 17
                continue

            fixed = _FIXED_LEN.get(mid)
            if fixed is not None:
                if length != fixed:
                    raise ProtocolError(f"message {mid} of length {length}, expected {fixed}")
                if avail < 4 + fixed:
                    break
                if fixed == 1:
                    out.append(_SINGLETONS[mid])
                elif fixed == 5:
                    index = _U32.unpack_from(buf, pos + 5)[0]
                    self._check_index(mid, index)
                    out.append(_INDEXED[mid](index))
                elif fixed == 13:
                    index, begin, blen = _III.unpack_from(buf, pos + 5)
                    self._check_range(mid, index, begin, blen)
                    out.append(_RANGED[mid](index, begin, blen))
                else:  # port
                    out.append(Port(int.from_bytes(buf[pos + 5 : pos + 7], "big")))
                pos += 4 + fixed
                continue

            if mid == BITFIELD:
                nbytes = length - 1
                expected = self._bitfield_len
                if expected >= 0:
                    if nbytes != expected:
                        raise ProtocolError(f"bitfield of {nbytes} bytes, expected {expected}")
                elif nbytes > MAX_BITFIELD_UNKNOWN:
                    raise ProtocolError(f"bitfield of {nbytes} bytes")
                stop = pos + 4 + length
                if stop > end:
                    break
                data = bytes(mv[pos + 5 : stop])
                if expected > 0 and data[-1] & self._spare_mask:
                    raise ProtocolError("bitfield has spare bits set")
                out.append(BitfieldMsg(data))
                pos = stop
                continue

            if mid == EXTENDED:
                if length < 2 or length > self.max_extended + 2:
                    raise ProtocolError(f"extended message of length {length}")
                stop = pos + 4 + length
                if stop > end:
                    break
                out.append(Extended(buf[pos + 5], bytes(mv[pos + 6 : stop])))
                pos = stop
                continue

            if mid in (HASH_REQUEST, HASH_REJECT):
                if length != 1 + _HASH_HEADER:
                    raise ProtocolError(f"hash message {mid} of length {length}")
                if avail < 5 + _HASH_HEADER:
                    break
                cls = HashRequest if mid == HASH_REQUEST else HashReject
                out.append(cls(bytes(mv[pos + 5 : pos + 37]), *_IIII.unpack_from(buf, pos + 37)))
                pos += 5 + _HASH_HEADER
                continue

            if mid == HASHES:
                if length < 1 + _HASH_HEADER or length > _MAX_HASHES_LEN:
                    raise ProtocolError(f"hashes message of length {length}")
                if avail < 5 + _HASH_HEADER:
                    break
                base, index, count, proof = _IIII.unpack_from(buf, pos + 37)
                _check_hashes_header(length, count, proof)
                stop = pos + 4 + length
                if stop > end:
                    break
                start = pos + 5 + _HASH_HEADER
                hashes = tuple(bytes(mv[i : i + HASH_SIZE]) for i in range(start, stop, HASH_SIZE))
                out.append(Hashes(bytes(mv[pos + 5 : pos + 37]), base, index, count, proof, hashes))
                pos = stop
                continue

            # Unknown id: skip without buffering.
            if length > self.max_block + 9:
                raise ProtocolError(f"unknown message {mid} of length {length}")
            stop = pos + 4 + length
            if stop > end:
                self._skip = stop - end
                pos = end
                break
            pos = stop

        if pos == end:
            self._start = self._end = 0
            if len(self._buf) > _MIN_BUFFER:  # an oversized message has gone
                self._buf = bytearray(_MIN_BUFFER)
                self._mv = memoryview(self._buf)
        else:
            self._start = pos
        return out


def _check_hashes_header(length: int, count: int, proof_layers: int) -> None:
    """A ``hashes`` message's own consistency, before its hashes are buffered."""
    if count < 1 or count > MAX_HASHES or count & (count - 1):
        raise ProtocolError(f"hashes message with length field {count}")
    if proof_layers >= MAX_PROOF_LAYERS:
        raise ProtocolError(f"hashes message with {proof_layers} proof layers")
    want = 1 + _HASH_HEADER + HASH_SIZE * (count + hash_proof_count(count, proof_layers))
    if length != want:
        raise ProtocolError(f"hashes message of length {length}, expected {want}")


# --------------------------------------------------------------------------
# BEP 6 allowed-fast set


def allowed_fast_set(ip: str, info_hash: bytes, num_pieces: int, k: int = 10) -> list[int]:
    """BEP 6's canonical allowed-fast set for a peer at ``ip`` (IPv4, /24).

    IPv6 peers get an empty set: BEP 6 defines no IPv6 computation, so any
    set we chose would not match the peer's expectation.
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise ProtocolError(f"bad peer address {ip!r}") from exc
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is None:
            return []
        addr = addr.ipv4_mapped
    k = min(k, num_pieces)
    if k <= 0:
        return []
    x = (int(addr) & 0xFFFFFF00).to_bytes(4, "big") + bytes(info_hash)
    allowed: list[int] = []
    while len(allowed) < k:
        x = hashlib.sha1(x).digest()
        for i in range(0, 20, 4):
            if len(allowed) >= k:
                break
            index = int.from_bytes(x[i : i + 4], "big") % num_pieces
            if index not in allowed:
                allowed.append(index)
    return allowed
