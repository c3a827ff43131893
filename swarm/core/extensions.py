"""BEP 10 extended handshake, BEP 9 ut_metadata and BEP 11 ut_pex payloads.

These are the payloads of wire ``Extended`` messages (the wire module frames
them). Everything decoded here comes from peers: bencode errors, wrong types
and out-of-range values raise :class:`ProtocolError`; unknown keys are ignored.

Our extension ids (the ids *peers* must use when sending to us) are fixed:
``ut_pex`` = 1 and ``ut_metadata`` = 3, as libtorrent uses 1 and 2 for its own
and most clients copy them; any fixed choice is correct by BEP 10.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from swarm.core import bencode
from swarm.errors import BencodeError, ProtocolError

EXT_HANDSHAKE_ID = 0
UT_PEX_ID = 1
UT_METADATA_ID = 3
OUR_EXTENSIONS: dict[str, int] = {"ut_pex": UT_PEX_ID, "ut_metadata": UT_METADATA_ID}

METADATA_PIECE_SIZE = 16384
#: Largest info dictionary we fetch: 16 MiB is ~800k pieces, far past real torrents.
MAX_METADATA_SIZE = 16 * 1024 * 1024
#: BEP 11 suggests at most 50 added peers per message; we refuse more.
MAX_PEX_PEERS = 50
#: What decode_pex accepts per list: libtorrent sends up to 100 added (and every dropped).
MAX_PEX_DECODE = 200
MAX_CLIENT_NAME = 100

# BEP 11 flags.
PEX_ENCRYPTION = 0x01
PEX_SEED = 0x02
PEX_UTP = 0x04
PEX_HOLEPUNCH = 0x08
PEX_REACHABLE = 0x10


def _decode_dict(payload: bytes, what: str) -> tuple[dict[bytes, Any], int]:
    try:
        value, end = bencode.decode_prefix(bytes(payload), strict_order=False, max_depth=20)
    except BencodeError as exc:
        raise ProtocolError(f"{what}: {exc}") from exc
    if not isinstance(value, dict):
        raise ProtocolError(f"{what} is not a dictionary")
    return value, end


def _opt_int(d: dict[bytes, Any], key: bytes, what: str) -> int | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, int):
        raise ProtocolError(f"{what}: {key.decode()} is not an integer")
    return v


def _opt_bytes(d: dict[bytes, Any], key: bytes, what: str) -> bytes | None:
    v = d.get(key)
    if v is None:
        return None
    if not isinstance(v, bytes):
        raise ProtocolError(f"{what}: {key.decode()} is not a string")
    return v


# --------------------------------------------------------------------------
# BEP 10 extended handshake


@dataclass(slots=True, frozen=True)
class ExtHandshake:
    """``m`` maps extension names to the ids the sender wants to receive them with.

    An id of 0 in a received ``m`` means "disabled" (BEP 10) and is left out.
    """

    m: dict[str, int] = field(default_factory=dict)
    v: str | None = None
    p: int | None = None
    reqq: int | None = None
    yourip: bytes | None = None
    metadata_size: int | None = None
    upload_only: bool = False


def encode_ext_handshake(hs: ExtHandshake) -> bytes:
    d: dict[bytes, Any] = {b"m": {k.encode(): v for k, v in hs.m.items()}}
    if hs.v is not None:
        d[b"v"] = hs.v
    if hs.p is not None:
        d[b"p"] = hs.p
    if hs.reqq is not None:
        d[b"reqq"] = hs.reqq
    if hs.yourip is not None:
        d[b"yourip"] = hs.yourip
    if hs.metadata_size is not None:
        d[b"metadata_size"] = hs.metadata_size
    if hs.upload_only:
        d[b"upload_only"] = 1
    return bencode.encode(d)


def decode_ext_handshake(payload: bytes) -> ExtHandshake:
    what = "extended handshake"
    d, end = _decode_dict(payload, what)
    if end != len(payload):
        raise ProtocolError(f"{what}: trailing bytes")
    m_raw = d.get(b"m", {})
    if not isinstance(m_raw, dict):
        raise ProtocolError(f"{what}: m is not a dictionary")
    m: dict[str, int] = {}
    for name, ext_id in m_raw.items():
        if not isinstance(ext_id, int) or not 0 <= ext_id <= 255:
            raise ProtocolError(f"{what}: bad id {ext_id!r} for {name!r}")
        try:
            text = name.decode("utf-8")
        except UnicodeDecodeError:
            continue  # a name we cannot know anyway
        if ext_id:
            m[text] = ext_id
    v_raw = _opt_bytes(d, b"v", what)
    v = v_raw.decode("utf-8", "replace")[:MAX_CLIENT_NAME] if v_raw is not None else None
    p = _opt_int(d, b"p", what)
    if p is not None and not 0 < p < 65536:
        p = None  # unusable, but not worth dropping the peer for
    reqq = _opt_int(d, b"reqq", what)
    if reqq is not None and reqq < 1:
        reqq = None
    yourip = _opt_bytes(d, b"yourip", what)
    if yourip is not None and len(yourip) not in (4, 16):
        raise ProtocolError(f"{what}: yourip of {len(yourip)} bytes")
    size = _opt_int(d, b"metadata_size", what)
    if size == 0:
        size = None  # "no metadata yet" from a peer that is itself fetching it
    if size is not None and not 0 < size <= MAX_METADATA_SIZE:
        raise ProtocolError(f"{what}: metadata_size {size}")
    upload_only = _opt_int(d, b"upload_only", what)
    return ExtHandshake(m, v, p, reqq, yourip, size, bool(upload_only))


# --------------------------------------------------------------------------
# BEP 9 ut_metadata


@dataclass(slots=True, frozen=True)
class MetadataRequest:
    piece: int


@dataclass(slots=True, frozen=True)
class MetadataData:
    piece: int
    total_size: int
    data: bytes


@dataclass(slots=True, frozen=True)
class MetadataReject:
    piece: int


MetadataMessage = MetadataRequest | MetadataData | MetadataReject


def metadata_piece_count(size: int) -> int:
    return (size + METADATA_PIECE_SIZE - 1) // METADATA_PIECE_SIZE


def metadata_piece_len(size: int, piece: int) -> int:
    return min(METADATA_PIECE_SIZE, size - piece * METADATA_PIECE_SIZE)


def encode_metadata_request(piece: int) -> bytes:
    return b"d8:msg_typei0e5:piecei%dee" % piece


def encode_metadata_reject(piece: int) -> bytes:
    return b"d8:msg_typei2e5:piecei%dee" % piece


def encode_metadata_data(piece: int, total_size: int, data: bytes) -> bytes:
    return b"d8:msg_typei1e5:piecei%de10:total_sizei%dee" % (piece, total_size) + data


def decode_metadata_message(payload: bytes, metadata_size: int | None) -> MetadataMessage | None:
    """Decode a ut_metadata payload; None for an unknown msg_type (BEP 9: ignore).

    ``metadata_size`` is the size we know (from the extended handshake, or of
    our own info dictionary); when given, piece indexes and data lengths are
    checked against it.
    """
    what = "ut_metadata"
    d, end = _decode_dict(payload, what)
    msg_type = _opt_int(d, b"msg_type", what)
    piece = _opt_int(d, b"piece", what)
    if msg_type is None or piece is None:
        raise ProtocolError(f"{what}: msg_type and piece are required")
    if msg_type not in (0, 1, 2):
        return None
    if piece < 0 or piece >= metadata_piece_count(metadata_size or MAX_METADATA_SIZE):
        raise ProtocolError(f"{what}: piece {piece} out of range")
    if msg_type != 1:
        if end != len(payload):
            raise ProtocolError(f"{what}: trailing bytes")
        return MetadataRequest(piece) if msg_type == 0 else MetadataReject(piece)
    total = _opt_int(d, b"total_size", what)
    if total is None or not 0 < total <= MAX_METADATA_SIZE:
        raise ProtocolError(f"{what}: bad total_size {total}")
    if metadata_size is not None and total != metadata_size:
        raise ProtocolError(f"{what}: total_size {total} != {metadata_size}")
    if piece >= metadata_piece_count(total):
        raise ProtocolError(f"{what}: piece {piece} out of range")
    data = bytes(payload[end:])
    expected = metadata_piece_len(total, piece)
    if len(data) != expected:
        raise ProtocolError(f"{what}: piece {piece} of {len(data)} bytes, expected {expected}")
    return MetadataData(piece, total, data)


class MetadataAssembler:
    """Collects ut_metadata pieces and checks them against the info-hash:
    its SHA-1 (20 bytes) or, for a BEP 52 v2 magnet, its SHA-256 (32 bytes)."""

    __slots__ = ("info_hash", "size", "num_pieces", "_pieces")

    def __init__(self, info_hash: bytes, size: int) -> None:
        if not 0 < size <= MAX_METADATA_SIZE:
            raise ProtocolError(f"metadata size {size} out of range")
        if len(info_hash) not in (20, 32):
            raise ProtocolError("an info-hash is 20 (SHA-1) or 32 (SHA-256) bytes")
        self.info_hash = bytes(info_hash)
        self.size = size
        self.num_pieces = metadata_piece_count(size)
        self._pieces: list[bytes | None] = [None] * self.num_pieces

    def missing(self) -> list[int]:
        return [i for i, p in enumerate(self._pieces) if p is None]

    def add(self, piece: int, data: bytes) -> bytes | None:
        """Store a piece; return the info bytes once all are in and their hash matches.

        On a mismatch every piece is forgotten (we cannot tell which peer lied)
        and ProtocolError is raised; fetching can start over.
        """
        if not 0 <= piece < self.num_pieces:
            raise ProtocolError(f"metadata piece {piece} out of range")
        if len(data) != metadata_piece_len(self.size, piece):
            raise ProtocolError(f"metadata piece {piece} has the wrong length")
        self._pieces[piece] = bytes(data)
        if any(p is None for p in self._pieces):
            return None
        info = b"".join(p for p in self._pieces if p is not None)
        digest = hashlib.sha256 if len(self.info_hash) == 32 else hashlib.sha1
        if digest(info).digest() != self.info_hash:
            self._pieces = [None] * self.num_pieces
            raise ProtocolError("metadata does not match the info-hash")
        return info


# --------------------------------------------------------------------------
# BEP 11 ut_pex

Addr = tuple[str, int]


@dataclass(slots=True, frozen=True)
class PexPeer:
    ip: str
    port: int
    flags: int = 0


@dataclass(slots=True, frozen=True)
class PexMessage:
    added: list[PexPeer] = field(default_factory=list)
    dropped: list[Addr] = field(default_factory=list)


def _compact(addrs: Iterable[Addr]) -> bytes:
    out = bytearray()
    for ip, port in addrs:
        out += ipaddress.ip_address(ip).packed + port.to_bytes(2, "big")
    return bytes(out)


def _is_v6(ip: str) -> bool:
    return ":" in ip


def encode_pex(msg: PexMessage) -> bytes:
    added4 = [p for p in msg.added if not _is_v6(p.ip)]
    added6 = [p for p in msg.added if _is_v6(p.ip)]
    d: dict[bytes, bytes] = {
        b"added": _compact((p.ip, p.port) for p in added4),
        b"added.f": bytes(p.flags & 0xFF for p in added4),
        b"dropped": _compact(a for a in msg.dropped if not _is_v6(a[0])),
    }
    if added6 or any(_is_v6(a[0]) for a in msg.dropped):
        d[b"added6"] = _compact((p.ip, p.port) for p in added6)
        d[b"added6.f"] = bytes(p.flags & 0xFF for p in added6)
        d[b"dropped6"] = _compact(a for a in msg.dropped if _is_v6(a[0]))
    return bencode.encode(d)


def _parse_compact(raw: bytes | None, size: int, what: str) -> list[Addr]:
    if not raw:
        return []
    if len(raw) % size:
        raise ProtocolError(f"ut_pex: {what} of {len(raw)} bytes")
    out: list[Addr] = []
    for i in range(0, len(raw), size):
        port = int.from_bytes(raw[i + size - 2 : i + size], "big")
        if port == 0:
            continue
        ip = ipaddress.ip_address(raw[i : i + size - 2])
        out.append((str(ip), port))
    return out


def decode_pex(payload: bytes) -> PexMessage:
    what = "ut_pex"
    d, end = _decode_dict(payload, what)
    if end != len(payload):
        raise ProtocolError(f"{what}: trailing bytes")
    added: list[PexPeer] = []
    dropped: list[Addr] = []
    for key, size in ((b"added", 6), (b"added6", 18)):
        raw = _opt_bytes(d, key, what)
        if raw is not None and len(raw) // size > MAX_PEX_DECODE:
            raise ProtocolError(f"{what}: more than {MAX_PEX_DECODE} peers in {key.decode()}")
        flags = _opt_bytes(d, key + b".f", what) or b""
        # Flags are per compact entry, port-0 entries included: index before filtering.
        if raw:
            if len(raw) % size:
                raise ProtocolError(f"{what}: {key.decode()} of {len(raw)} bytes")
            for n, i in enumerate(range(0, len(raw), size)):
                port = int.from_bytes(raw[i + size - 2 : i + size], "big")
                if port == 0:
                    continue
                ip = str(ipaddress.ip_address(raw[i : i + size - 2]))
                added.append(PexPeer(ip, port, flags[n] if n < len(flags) else 0))
    if len(added) > MAX_PEX_DECODE:
        raise ProtocolError(f"{what}: more than {MAX_PEX_DECODE} added peers")
    for key, size in ((b"dropped", 6), (b"dropped6", 18)):
        raw = _opt_bytes(d, key, what)
        if raw is not None and len(raw) // size > MAX_PEX_DECODE:
            raise ProtocolError(f"{what}: more than {MAX_PEX_DECODE} peers in {key.decode()}")
        dropped += _parse_compact(raw, size, key.decode())
    return PexMessage(added, dropped)


class PexState:
    """What one connection has been told; computes the next ut_pex diff.

    One per peer connection. ``make`` returns None when it is too early (BEP
    11: at most one message a minute) or nothing changed; the interval only
    restarts when a message is actually produced. The first message may go
    out at once. At most ``MAX_PEX_PEERS`` added and dropped per message;
    the rest follow in later messages.
    """

    __slots__ = ("interval", "_sent", "_last")

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._sent: dict[Addr, int] = {}
        self._last: float | None = None

    def due(self, now: float) -> bool:
        return self._last is None or now - self._last >= self.interval

    def make(self, current: Iterable[PexPeer], now: float) -> PexMessage | None:
        """``current``: the peers to advertise now (not the receiving peer itself)."""
        if not self.due(now):
            return None
        cur = {(p.ip, p.port): p.flags for p in current}
        added = [PexPeer(a[0], a[1], f) for a, f in cur.items() if a not in self._sent]
        dropped = [a for a in self._sent if a not in cur]
        added = added[:MAX_PEX_PEERS]
        dropped = dropped[:MAX_PEX_PEERS]
        if not added and not dropped:
            return None
        for p in added:
            self._sent[(p.ip, p.port)] = p.flags
        for a in dropped:
            del self._sent[a]
        self._last = now
        return PexMessage(added, dropped)
