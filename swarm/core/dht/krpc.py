"""KRPC (BEP 5): bencoded queries, responses and errors over UDP.

Every datagram is hostile: the decoder bounds the packet size, nesting depth,
string and list lengths, checks every type and length, and raises only
``KRPCError``. The error carries the transaction id (when it could be read) and
the KRPC error code, so the glue can answer a broken query with a 203/204.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

from swarm.core.bencode import decode, encode
from swarm.errors import BencodeError, ProtocolError

#: Larger than any legitimate message (a full get_peers answer is ~1 KB) and
#: under a 1500-byte MTU plus some slack for implementations that pad.
MAX_PACKET = 2048
#: d -> d -> l -> str is depth 3; leave room for harmless unknown keys.
MAX_DEPTH = 6
MAX_TID = 32
MAX_TOKEN = 64
MAX_NODES = 32
MAX_VALUES = 200
MAX_ERROR_TEXT = 200

GENERIC_ERROR = 201
SERVER_ERROR = 202
PROTOCOL_ERROR = 203
METHOD_UNKNOWN = 204

NODE4_LEN = 26
NODE6_LEN = 38

Peer = tuple[str, int]


class KRPCError(ProtocolError):
    """A datagram that is not valid KRPC; ``t`` is its transaction id if known."""

    def __init__(self, message: str, t: bytes | None = None, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.t = t
        self.code = code


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A DHT node as found in compact node info; ``id`` is 20 raw bytes."""

    id: bytes
    host: str
    port: int

    @property
    def addr(self) -> Peer:
        return (self.host, self.port)


@dataclass(frozen=True, slots=True)
class Ping:
    t: bytes
    id: bytes
    #: BEP 43: the sender cannot answer queries; keep it out of routing tables.
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class FindNode:
    t: bytes
    id: bytes
    target: bytes
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class GetPeers:
    t: bytes
    id: bytes
    info_hash: bytes
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class AnnouncePeer:
    t: bytes
    id: bytes
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False
    read_only: bool = False


@dataclass(frozen=True, slots=True)
class Response:
    """A reply; KRPC replies do not name their query, the transaction id does."""

    t: bytes
    id: bytes
    nodes: tuple[NodeInfo, ...] = ()
    nodes6: tuple[NodeInfo, ...] = ()
    values: tuple[Peer, ...] = ()
    token: bytes | None = None


@dataclass(frozen=True, slots=True)
class Error:
    t: bytes
    code: int
    message: str


Query = Ping | FindNode | GetPeers | AnnouncePeer
Message = Ping | FindNode | GetPeers | AnnouncePeer | Response | Error


# -- compact formats --------------------------------------------------------


def _pack_ip(host: str) -> bytes:
    return ipaddress.ip_address(host).packed


def _unpack_ip(raw: bytes) -> str:
    if len(raw) == 4:
        return f"{raw[0]}.{raw[1]}.{raw[2]}.{raw[3]}"
    return str(ipaddress.IPv6Address(raw))


@functools.lru_cache(maxsize=8192)
def encode_peer(peer: Peer) -> bytes:
    """Compact peer info: 6 bytes (IPv4) or 18 (IPv6).

    Cached: answering get_peers encodes the same stored peers over and over,
    and ipaddress costs ~1.5 us a call.
    """
    host, port = peer
    return _pack_ip(host) + port.to_bytes(2, "big")


def decode_peer(raw: bytes) -> Peer:
    if len(raw) not in (6, 18):
        raise KRPCError(f"compact peer of {len(raw)} bytes")
    return _unpack_ip(raw[:-2]), int.from_bytes(raw[-2:], "big")


def encode_nodes(nodes: list[NodeInfo] | tuple[NodeInfo, ...]) -> bytes:
    """Compact node info: 20-byte id + compact peer, concatenated."""
    return b"".join(n.id + encode_peer(n.addr) for n in nodes)


def decode_nodes(
    raw: bytes, ipv6: bool = False, max_nodes: int = MAX_NODES
) -> tuple[NodeInfo, ...]:
    size = NODE6_LEN if ipv6 else NODE4_LEN
    if len(raw) % size:
        raise KRPCError(f"compact nodes of {len(raw)} bytes is not a multiple of {size}")
    if len(raw) // size > max_nodes:
        raise KRPCError(f"more than {max_nodes} nodes")
    out = []
    for i in range(0, len(raw), size):
        chunk = raw[i : i + size]
        host, port = decode_peer(chunk[20:])
        out.append(NodeInfo(chunk[:20], host, port))
    return tuple(out)


# -- encoding ---------------------------------------------------------------


def encode_message(msg: Message, version: bytes | None = None) -> bytes:
    """Bencode a message; ``version`` is the optional ``v`` client tag."""
    out: dict[bytes, Any] = {b"t": msg.t}
    if version is not None:
        out[b"v"] = version
    if isinstance(msg, Response):
        r: dict[bytes, Any] = {b"id": msg.id}
        if msg.nodes:
            r[b"nodes"] = encode_nodes(msg.nodes)
        if msg.nodes6:
            r[b"nodes6"] = encode_nodes(msg.nodes6)
        if msg.values:
            r[b"values"] = [encode_peer(p) for p in msg.values]
        if msg.token is not None:
            r[b"token"] = msg.token
        out[b"y"] = b"r"
        out[b"r"] = r
    elif isinstance(msg, Error):
        out[b"y"] = b"e"
        out[b"e"] = [msg.code, msg.message.encode("utf-8")]
    else:
        a: dict[bytes, Any] = {b"id": msg.id}
        if isinstance(msg, Ping):
            q = b"ping"
        elif isinstance(msg, FindNode):
            q = b"find_node"
            a[b"target"] = msg.target
        elif isinstance(msg, GetPeers):
            q = b"get_peers"
            a[b"info_hash"] = msg.info_hash
        else:
            q = b"announce_peer"
            a[b"info_hash"] = msg.info_hash
            a[b"port"] = msg.port
            a[b"token"] = msg.token
            a[b"implied_port"] = 1 if msg.implied_port else 0
        out[b"y"] = b"q"
        out[b"q"] = q
        out[b"a"] = a
        if msg.read_only:
            out[b"ro"] = 1
    return encode(out)


# -- decoding ---------------------------------------------------------------


def _get_bytes(d: dict[bytes, Any], key: bytes, t: bytes | None, max_len: int) -> bytes:
    value = d.get(key)
    if not isinstance(value, bytes):
        raise KRPCError(f"{key.decode()} missing or not a string", t)
    if len(value) > max_len:
        raise KRPCError(f"{key.decode()} longer than {max_len} bytes", t)
    return value


def _get_id(d: dict[bytes, Any], key: bytes, t: bytes | None) -> bytes:
    value = _get_bytes(d, key, t, 20)
    if len(value) != 20:
        raise KRPCError(f"{key.decode()} is {len(value)} bytes, not 20", t)
    return value


def _get_dict(d: dict[bytes, Any], key: bytes, t: bytes | None) -> dict[bytes, Any]:
    value = d.get(key)
    if not isinstance(value, dict):
        raise KRPCError(f"{key.decode()} missing or not a dict", t)
    return value


def _decode_query(msg: dict[bytes, Any], t: bytes) -> Query:
    q = _get_bytes(msg, b"q", t, 32)
    a = _get_dict(msg, b"a", t)
    node_id = _get_id(a, b"id", t)
    ro = msg.get(b"ro") == 1
    if q == b"ping":
        return Ping(t, node_id, ro)
    if q == b"find_node":
        return FindNode(t, node_id, _get_id(a, b"target", t), ro)
    if q == b"get_peers":
        return GetPeers(t, node_id, _get_id(a, b"info_hash", t), ro)
    if q == b"announce_peer":
        info_hash = _get_id(a, b"info_hash", t)
        token = _get_bytes(a, b"token", t, MAX_TOKEN)
        implied = a.get(b"implied_port", 0)
        if not isinstance(implied, int) or implied not in (0, 1):
            raise KRPCError("implied_port is not 0 or 1", t)
        port = a.get(b"port", 0 if implied else None)
        if not isinstance(port, int) or not 0 <= port <= 0xFFFF:
            raise KRPCError("port missing or out of range", t)
        if port == 0 and not implied:
            raise KRPCError("port 0", t)
        return AnnouncePeer(t, node_id, info_hash, port, token, bool(implied), ro)
    raise KRPCError(f"unknown method {q[:32]!r}", t, METHOD_UNKNOWN)


def _decode_response(msg: dict[bytes, Any], t: bytes) -> Response:
    r = _get_dict(msg, b"r", t)
    node_id = _get_id(r, b"id", t)
    nodes: tuple[NodeInfo, ...] = ()
    nodes6: tuple[NodeInfo, ...] = ()
    values: tuple[Peer, ...] = ()
    token = None
    if b"nodes" in r:
        nodes = decode_nodes(_get_bytes(r, b"nodes", t, MAX_NODES * NODE4_LEN))
    if b"nodes6" in r:
        nodes6 = decode_nodes(_get_bytes(r, b"nodes6", t, MAX_NODES * NODE6_LEN), ipv6=True)
    if b"values" in r:
        raw = r[b"values"]
        if not isinstance(raw, list):
            raise KRPCError("values is not a list", t)
        if len(raw) > MAX_VALUES:
            raise KRPCError(f"more than {MAX_VALUES} values", t)
        out = []
        for item in raw:
            if not isinstance(item, bytes):
                raise KRPCError("a value is not a string", t)
            out.append(decode_peer(item))
        values = tuple(out)
    if b"token" in r:
        token = _get_bytes(r, b"token", t, MAX_TOKEN)
    return Response(t, node_id, nodes, nodes6, values, token)


def _decode_error(msg: dict[bytes, Any], t: bytes) -> Error:
    e = msg.get(b"e")
    if not isinstance(e, list) or len(e) < 2:
        raise KRPCError("e is not a [code, message] list", t)
    code, text = e[0], e[1]
    if not isinstance(code, int) or not isinstance(text, bytes):
        raise KRPCError("e has the wrong types", t)
    message = text[:MAX_ERROR_TEXT].decode("utf-8", "replace")
    return Error(t, code, message)


def decode_message(data: bytes) -> Message:
    """Decode one datagram; raises ``KRPCError`` and nothing else."""
    if len(data) > MAX_PACKET:
        raise KRPCError(f"datagram of {len(data)} bytes exceeds {MAX_PACKET}")
    try:
        msg = decode(data, max_size=MAX_PACKET, max_depth=MAX_DEPTH, strict_order=False)
    except BencodeError as exc:
        raise KRPCError(f"bad bencoding: {exc}") from None
    if not isinstance(msg, dict):
        raise KRPCError("message is not a dict")
    t = _get_bytes(msg, b"t", None, MAX_TID)
    y = msg.get(b"y")
    if y == b"q":
        return _decode_query(msg, t)
    if y == b"r":
        return _decode_response(msg, t)
    if y == b"e":
        return _decode_error(msg, t)
    raise KRPCError("y is not q, r or e", t)
