"""Tracker request/response codecs: HTTP (BEP 3/23/7/48) and UDP (BEP 15).

Pure and shared by our tracker server and our tracker client, so both sides
are tested against the same byte layouts. Everything decoded here is hostile:
lengths are bounded, numbers range-checked, and failures raise our own errors
(``BadAnnounce`` on the server side, whose message becomes the bencoded
``failure reason``; ``ProtocolError``/``TrackerFailure`` on the client side).

Peers travel inside the server as ``(peer_id, compact)`` pairs where
``compact`` is the 6-byte (IPv4) or 18-byte (IPv6, BEP 7) packed address, so
a compact answer is a plain ``b"".join`` with no per-peer parsing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random
import socket
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_from_bytes, unquote_to_bytes, urlsplit, urlunsplit

from swarm.core.bencode import decode, encode
from swarm.errors import BencodeError, ProtocolError, TrackerError

#: Longest announce/scrape query string we parse; libtorrent's are ~300 bytes.
MAX_QUERY_LENGTH = 4096
#: Most parameters in one query (scrape repeats info_hash).
MAX_PARAMS = 128
#: Most info-hashes in one HTTP scrape; UDP fits 74 in a datagram.
MAX_SCRAPE_HASHES = 100
UDP_MAX_SCRAPE_HASHES = 74
DEFAULT_NUMWANT = 50
MAX_NUMWANT = 200
#: Largest byte counter accepted (signed 64-bit, as in BEP 15).
MAX_COUNTER = 2**63 - 1
#: Most peers a client accepts from one answer.
MAX_RESPONSE_PEERS = 1000
#: Bounds on the intervals a tracker may ask of us (seconds).
MAX_INTERVAL = 7 * 24 * 3600

EVENTS = ("", "started", "stopped", "completed", "paused")

UDP_MAGIC = 0x41727101980
UDP_CONNECT, UDP_ANNOUNCE, UDP_SCRAPE, UDP_ERROR = 0, 1, 2, 3
#: BEP 15 event codes.
UDP_EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3, "paused": 0}
_UDP_EVENT_NAMES = {0: "", 1: "completed", 2: "started", 3: "stopped"}
#: A connection id is valid for one minute after it was received.
UDP_CONNECTION_TTL = 60.0


class BadAnnounce(ProtocolError):
    """A client's announce or scrape request is invalid; the message is the failure reason."""


class TrackerFailure(TrackerError):
    """A tracker answered with a ``failure reason`` (or a UDP error packet)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------- peers


def pack_peer(ip: str, port: int) -> bytes:
    """Compact form of an address: 4+2 bytes for IPv4, 16+2 for IPv6."""
    if not 0 < port < 65536:
        raise ValueError(f"port {port} out of range")
    try:  # the common case, 5x cheaper than ipaddress; as strict (no "01.2.3.4")
        return socket.inet_pton(socket.AF_INET, ip) + port.to_bytes(2, "big")
    except (OSError, TypeError, ValueError):
        pass
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.packed + port.to_bytes(2, "big")


def unpack_peer(compact: bytes) -> tuple[str, int]:
    if len(compact) == 6:
        return str(ipaddress.IPv4Address(compact[:4])), int.from_bytes(compact[4:], "big")
    if len(compact) == 18:
        return str(ipaddress.IPv6Address(compact[:16])), int.from_bytes(compact[16:], "big")
    raise ProtocolError(f"compact peer of {len(compact)} bytes")


def _unpack_peers(blob: bytes, size: int, limit: int) -> list[tuple[str, int]]:
    """Peers from a compact string; trailing partial entries and port 0 are ignored."""
    out: list[tuple[str, int]] = []
    for off in range(0, len(blob) - size + 1, size):
        if len(out) >= limit:
            break
        ip, port = unpack_peer(blob[off : off + size])
        if port:
            out.append((ip, port))
    return out


# --------------------------------------------------------------------------- client requests


def build_announce_url(
    base: str,
    info_hash: bytes,
    peer_id: bytes,
    port: int,
    uploaded: int,
    downloaded: int,
    left: int,
    event: str = "",
    *,
    numwant: int | None = None,
    compact: bool = True,
    key: str | None = None,
    tracker_id: bytes | None = None,
) -> str:
    """The GET URL of an announce; binary values are percent-encoded byte by byte.

    A query already in ``base`` (private trackers put a passkey there) is kept.
    """
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("info_hash and peer_id must be 20 bytes")
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    parts = [
        "info_hash=" + quote_from_bytes(info_hash, safe=""),
        "peer_id=" + quote_from_bytes(peer_id, safe=""),
        f"port={port}",
        f"uploaded={uploaded}",
        f"downloaded={downloaded}",
        f"left={left}",
        f"compact={1 if compact else 0}",
    ]
    if compact:
        parts.append("no_peer_id=1")
    if event:
        parts.append(f"event={event}")
    if numwant is not None:
        parts.append(f"numwant={numwant}")
    if key is not None:
        parts.append("key=" + quote_from_bytes(key.encode(), safe=""))
    if tracker_id is not None:
        parts.append("trackerid=" + quote_from_bytes(tracker_id, safe=""))
    return _append_query(base, "&".join(parts))


def build_scrape_url(scrape_base: str, info_hashes: Iterable[bytes]) -> str:
    query = "&".join("info_hash=" + quote_from_bytes(h, safe="") for h in info_hashes)
    return _append_query(scrape_base, query)


def _append_query(base: str, query: str) -> str:
    scheme, netloc, path, existing, fragment = urlsplit(base)
    if existing:
        query = existing.rstrip("&") + "&" + query
    return urlunsplit((scheme, netloc, path, query, fragment))


def scrape_url_for(announce_url: str) -> str | None:
    """The scrape URL by the BEP 48 convention, or None when there is none."""
    scheme, netloc, path, query, fragment = urlsplit(announce_url)
    head, _, last = path.rpartition("/")
    if not last.startswith("announce"):
        return None
    return urlunsplit((scheme, netloc, f"{head}/scrape{last[8:]}", query, fragment))


# --------------------------------------------------------------------------- server: requests


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: str = ""
    numwant: int = DEFAULT_NUMWANT
    compact: bool = True
    no_peer_id: bool = False
    key: bytes | None = None
    ip: str | None = None  # as given by the client; honoured only when trusted

    @property
    def is_seed(self) -> bool:
        return self.left == 0


def _chunks(raw: str | bytes) -> list[str]:
    """The non-empty ``name=value`` pieces of a query, length and count bounded."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("ascii")
        except UnicodeDecodeError:
            raise BadAnnounce("query string is not ASCII") from None
    if not raw.isascii():
        raise BadAnnounce("query string is not ASCII")
    if len(raw) > MAX_QUERY_LENGTH:
        raise BadAnnounce(f"query string longer than {MAX_QUERY_LENGTH} bytes")
    if not raw:
        return []
    chunks = raw.split("&")
    if len(chunks) > MAX_PARAMS:
        raise BadAnnounce(f"more than {MAX_PARAMS} parameters")
    return [c for c in chunks if c]


def _split_query(raw: str | bytes) -> list[tuple[str, bytes]]:
    pairs = []
    for chunk in _chunks(raw):
        name, _, value = chunk.partition("=")
        pairs.append((name, unquote(value)))
    return pairs


_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def unquote(value: str) -> bytes:
    """``urllib.parse.unquote_to_bytes`` with fast paths for the two shapes clients send:
    nothing escaped (numbers) and every byte escaped (libtorrent's info_hash)."""
    if "%" not in value:
        return value.encode()
    if value[::3] == "%" * (len(value) // 3) and len(value) % 3 == 0:
        digits = value.replace("%", "")
        if len(digits) * 3 == len(value) * 2 and _HEX_DIGITS.issuperset(digits):
            return bytes.fromhex(digits)
    return unquote_to_bytes(value)


def _raw_params(raw: str | bytes) -> dict[str, str]:
    """Name -> still-encoded value; values are decoded only when used."""
    params: dict[str, str] = {}
    for chunk in _chunks(raw):
        name, _, value = chunk.partition("=")
        if name in params:
            raise BadAnnounce(f"duplicate parameter {name[:32]!r}")
        params[name] = value
    return params


def _text_number(name: str, value: str, maximum: int = MAX_COUNTER) -> int:
    if "%" in value:  # digits may legally be escaped
        value = unquote(value).decode("latin-1")
    if not value or len(value) > 20 or not (value.isascii() and value.isdigit()):
        raise BadAnnounce(f"invalid {name}")  # isascii: "²" is a digit to str.isdigit
    n = int(value)
    if n > maximum:
        raise BadAnnounce(f"{name} out of range")
    return n


def _twenty_bytes(params: dict[str, str], name: str) -> bytes:
    """The required 20-byte ``info_hash`` or ``peer_id``, decoded."""
    value = params.get(name)
    if value is None:
        raise BadAnnounce(f"missing {name}")
    decoded = unquote(value)
    if len(decoded) != 20:
        raise BadAnnounce(f"invalid {name}: must be 20 bytes")
    return decoded


def parse_announce_query(
    raw: str | bytes,
    *,
    default_numwant: int = DEFAULT_NUMWANT,
    max_numwant: int = MAX_NUMWANT,
) -> AnnounceRequest:
    """Validate the raw (still percent-encoded) query string of ``GET /announce``."""
    params = _raw_params(raw)
    get = params.get
    info_hash = _twenty_bytes(params, "info_hash")
    peer_id = _twenty_bytes(params, "peer_id")
    value = get("port")
    if value is None:
        raise BadAnnounce("missing port")
    port = _text_number("port", value, 65535)
    if port == 0:
        raise BadAnnounce("invalid port: 0")
    value = get("uploaded")
    uploaded = 0 if value is None else _text_number("uploaded", value)
    value = get("downloaded")
    downloaded = 0 if value is None else _text_number("downloaded", value)
    value = get("left")
    left = 0 if value is None else _text_number("left", value)
    value = get("event")
    event = "" if not value else unquote(value).decode("latin-1")
    if event not in EVENTS:
        if event != "empty":
            raise BadAnnounce(f"invalid event {event[:32]!r}")
        event = ""
    value = get("numwant")
    numwant = default_numwant if value is None else _text_number("numwant", value, 2**31)
    compact = get("compact", "1")
    if compact not in ("0", "1"):
        raise BadAnnounce("invalid compact: must be 0 or 1")
    no_peer_id = get("no_peer_id", "0") not in ("0", "")
    value = get("key")
    key = None if value is None else unquote(value)
    if key is not None and len(key) > 64:
        raise BadAnnounce("invalid key: too long")
    ip: str | None = None
    value = get("ip")
    if value:
        try:
            ip = str(ipaddress.ip_address(unquote(value).decode("ascii")))
        except (UnicodeDecodeError, ValueError):
            raise BadAnnounce("invalid ip: not an IP address") from None
    return AnnounceRequest(
        info_hash, peer_id, port, uploaded, downloaded, left, event,
        min(numwant, max_numwant), compact == "1", no_peer_id, key, ip,
    )  # fmt: skip


def parse_scrape_query(raw: str | bytes) -> list[bytes]:
    """The info-hashes of ``GET /scrape`` (empty list: all swarms)."""
    hashes: list[bytes] = []
    for name, value in _split_query(raw):
        if name != "info_hash":
            continue
        if len(value) != 20:
            raise BadAnnounce("invalid info_hash: must be 20 bytes")
        if value not in hashes:
            hashes.append(value)
        if len(hashes) > MAX_SCRAPE_HASHES:
            raise BadAnnounce(f"more than {MAX_SCRAPE_HASHES} info_hashes")
    return hashes


# --------------------------------------------------------------------------- server: responses


def encode_failure(reason: str) -> bytes:
    return encode({b"failure reason": reason})


def encode_announce_response(
    peers: Sequence[tuple[bytes, bytes]],
    *,
    interval: int,
    min_interval: int | None = None,
    complete: int = 0,
    incomplete: int = 0,
    compact: bool = True,
    no_peer_id: bool = False,
    warning: str | None = None,
) -> bytes:
    """``peers`` are ``(peer_id, compact_address)``; IPv6 ones go to ``peers6`` (BEP 7)."""
    if compact and not warning:
        # the hot path (every modern client): bytes laid out directly, keys in sorted order
        v4 = b"".join([c for _, c in peers])
        v6 = b""
        if len(v4) != 6 * len(peers):  # some IPv6 among them
            v4 = b"".join([c for _, c in peers if len(c) == 6])
            v6 = b"".join([c for _, c in peers if len(c) == 18])
        parts = [
            b"d8:completei%de10:incompletei%de8:intervali%de" % (complete, incomplete, interval)
        ]
        if min_interval is not None:
            parts.append(b"12:min intervali%de" % min_interval)
        parts.append(b"5:peers%d:" % len(v4))
        parts.append(v4)
        if v6:
            parts.append(b"6:peers6%d:" % len(v6))
            parts.append(v6)
        parts.append(b"e")
        return b"".join(parts)
    out: dict[bytes, Any] = {
        b"interval": interval,
        b"complete": complete,
        b"incomplete": incomplete,
    }
    if min_interval is not None:
        out[b"min interval"] = min_interval
    if warning:
        out[b"warning message"] = warning
    if compact:
        out[b"peers"] = b"".join(c for _, c in peers if len(c) == 6)
        v6 = b"".join(c for _, c in peers if len(c) == 18)
        if v6:
            out[b"peers6"] = v6
    else:
        entries = []
        for pid, c in peers:
            ip, port = unpack_peer(c)
            entry: dict[bytes, Any] = {b"ip": ip, b"port": port}
            if not no_peer_id:
                entry[b"peer id"] = pid
            entries.append(entry)
        out[b"peers"] = entries
    return encode(out)


@dataclass(frozen=True, slots=True)
class ScrapeStats:
    complete: int  # seeders
    downloaded: int  # completed downloads ever
    incomplete: int  # leechers


def encode_scrape_response(files: dict[bytes, ScrapeStats]) -> bytes:
    return encode(
        {
            b"files": {
                h: {
                    b"complete": s.complete,
                    b"downloaded": s.downloaded,
                    b"incomplete": s.incomplete,
                }
                for h, s in files.items()
            }
        }
    )


# --------------------------------------------------------------------------- client: responses


@dataclass(frozen=True, slots=True)
class AnnounceResponse:
    interval: int
    min_interval: int | None = None
    peers: list[tuple[str, int]] = field(default_factory=list)
    complete: int | None = None
    incomplete: int | None = None
    warning: str | None = None
    tracker_id: bytes | None = None


def _text(value: object, limit: int = 1024) -> str:
    if isinstance(value, bytes):
        return value[:limit].decode("utf-8", "replace")
    return str(value)[:limit]


def _opt_count(d: dict[bytes, Any], key: bytes) -> int | None:
    v = d.get(key)
    if isinstance(v, int) and 0 <= v <= MAX_COUNTER:
        return v
    return None


def _bdict(data: bytes) -> dict[bytes, Any]:
    try:
        value = decode(data, max_size=1 << 20, max_depth=8, strict_order=False)
    except BencodeError as exc:
        raise ProtocolError(f"tracker response is not valid bencoding: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("tracker response is not a dictionary")
    return value


def parse_announce_response(
    data: bytes, *, max_peers: int = MAX_RESPONSE_PEERS
) -> AnnounceResponse:
    """Decode an HTTP tracker's answer; a ``failure reason`` raises ``TrackerFailure``."""
    d = _bdict(data)
    if b"failure reason" in d:
        raise TrackerFailure(_text(d[b"failure reason"]))
    interval = d.get(b"interval")
    if not isinstance(interval, int) or interval < 0:
        raise ProtocolError("tracker response has no valid interval")
    min_interval = _opt_count(d, b"min interval")
    peers: list[tuple[str, int]] = []
    raw = d.get(b"peers", b"")
    if isinstance(raw, bytes):
        peers = _unpack_peers(raw, 6, max_peers)
    elif isinstance(raw, list):
        for entry in raw[: max_peers * 2]:
            if len(peers) >= max_peers:
                break
            if not isinstance(entry, dict):
                continue
            ip, port = entry.get(b"ip"), entry.get(b"port")
            if not isinstance(ip, bytes) or not isinstance(port, int) or not 0 < port < 65536:
                continue
            try:
                addr = ipaddress.ip_address(ip.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                continue  # hostnames are not worth a DNS lookup per peer
            peers.append((str(addr), port))
    raw6 = d.get(b"peers6")
    if isinstance(raw6, bytes):
        peers.extend(_unpack_peers(raw6, 18, max_peers - len(peers)))
    tracker_id = d.get(b"tracker id")
    warning = d.get(b"warning message")
    return AnnounceResponse(
        interval=min(interval, MAX_INTERVAL),
        min_interval=None if min_interval is None else min(min_interval, MAX_INTERVAL),
        peers=peers,
        complete=_opt_count(d, b"complete"),
        incomplete=_opt_count(d, b"incomplete"),
        warning=None if warning is None else _text(warning),
        tracker_id=tracker_id[:64] if isinstance(tracker_id, bytes) else None,
    )


def parse_scrape_response(data: bytes) -> dict[bytes, ScrapeStats]:
    d = _bdict(data)
    if b"failure reason" in d:
        raise TrackerFailure(_text(d[b"failure reason"]))
    files = d.get(b"files")
    if not isinstance(files, dict):
        raise ProtocolError("scrape response has no files dictionary")
    out: dict[bytes, ScrapeStats] = {}
    for h, s in files.items():
        if len(h) != 20 or not isinstance(s, dict):
            continue
        out[h] = ScrapeStats(
            _opt_count(s, b"complete") or 0,
            _opt_count(s, b"downloaded") or 0,
            _opt_count(s, b"incomplete") or 0,
        )
    return out


# --------------------------------------------------------------------------- UDP (BEP 15)

_HEAD = struct.Struct(">II")  # action, transaction id
_CONNECT_REQ = struct.Struct(">QII")
_CONNECT_RESP = struct.Struct(">IIQ")
_ANNOUNCE_REQ = struct.Struct(">QII20s20sQQQIIIiH")  # 98 bytes
_ANNOUNCE_RESP = struct.Struct(">IIIII")  # action, tid, interval, leechers, seeders
_SCRAPE_ENTRY = struct.Struct(">III")  # seeders, completed, leechers


def udp_timeout(attempt: int, base: float = 15.0) -> float:
    """BEP 15 retransmission timeout: 15 * 2**n seconds for the n-th attempt."""
    return float(base * 2 ** max(0, min(attempt, 8)))


def new_transaction_id(rng: random.Random) -> int:
    return rng.getrandbits(32)


def udp_connect_request(tid: int) -> bytes:
    return _CONNECT_REQ.pack(UDP_MAGIC, UDP_CONNECT, tid)


def udp_announce_request(
    connection_id: int,
    tid: int,
    info_hash: bytes,
    peer_id: bytes,
    downloaded: int,
    left: int,
    uploaded: int,
    event: str,
    key: int,
    numwant: int,
    port: int,
    ip: int = 0,
) -> bytes:
    if len(info_hash) != 20 or len(peer_id) != 20:
        raise ValueError("info_hash and peer_id must be 20 bytes")
    return _ANNOUNCE_REQ.pack(
        connection_id, UDP_ANNOUNCE, tid, info_hash, peer_id,
        min(downloaded, MAX_COUNTER), min(left, MAX_COUNTER), min(uploaded, MAX_COUNTER),
        UDP_EVENTS[event], ip, key & 0xFFFFFFFF, numwant, port,
    )  # fmt: skip


def udp_scrape_request(connection_id: int, tid: int, info_hashes: Sequence[bytes]) -> bytes:
    if not 0 < len(info_hashes) <= UDP_MAX_SCRAPE_HASHES:
        raise ValueError("1..74 info-hashes per UDP scrape")
    if any(len(h) != 20 for h in info_hashes):
        raise ValueError("info-hashes must be 20 bytes")
    return _CONNECT_REQ.pack(connection_id, UDP_SCRAPE, tid) + b"".join(info_hashes)


def _udp_check(data: bytes, tid: int, action: int, min_len: int) -> None:
    if len(data) < 8:
        raise ProtocolError(f"UDP tracker packet of {len(data)} bytes")
    got_action, got_tid = _HEAD.unpack_from(data)
    if got_tid != tid:
        raise ProtocolError("UDP tracker transaction id mismatch")
    if got_action == UDP_ERROR:
        raise TrackerFailure(_text(data[8:]) or "tracker error")
    if got_action != action:
        raise ProtocolError(f"UDP tracker answered action {got_action}, expected {action}")
    if len(data) == 8 and min_len > 8:  # opentracker's answer for a hash it does not serve
        raise ProtocolError("UDP tracker sent an empty answer (torrent not served there?)")
    if len(data) < min_len:
        raise ProtocolError(f"UDP tracker packet of {len(data)} bytes is too short")


def udp_transaction_id(data: bytes) -> int | None:
    """Transaction id of an incoming packet (to route it), or None if too short."""
    return _HEAD.unpack_from(data)[1] if len(data) >= 8 else None


def udp_parse_connect(data: bytes, tid: int) -> int:
    _udp_check(data, tid, UDP_CONNECT, 16)
    return int(_CONNECT_RESP.unpack_from(data)[2])


def udp_parse_announce(
    data: bytes, tid: int, *, ipv6: bool = False, max_peers: int = MAX_RESPONSE_PEERS
) -> AnnounceResponse:
    """``ipv6``: the tracker was reached over IPv6, so peers are 18 bytes each."""
    _udp_check(data, tid, UDP_ANNOUNCE, 20)
    _, _, interval, leechers, seeders = _ANNOUNCE_RESP.unpack_from(data)
    peers = _unpack_peers(data[20:], 18 if ipv6 else 6, max_peers)
    return AnnounceResponse(
        interval=min(interval, MAX_INTERVAL), peers=peers, complete=seeders, incomplete=leechers
    )


def udp_parse_scrape(
    data: bytes, tid: int, info_hashes: Sequence[bytes]
) -> dict[bytes, ScrapeStats]:
    _udp_check(data, tid, UDP_SCRAPE, 8 + 12 * len(info_hashes))
    out: dict[bytes, ScrapeStats] = {}
    for i, h in enumerate(info_hashes):
        seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(data, 8 + 12 * i)
        out[h] = ScrapeStats(seeders, completed, leechers)
    return out


# UDP server side (``tracker.udp``): decode requests, encode answers, connection ids.


@dataclass(frozen=True, slots=True)
class UdpRequest:
    action: int
    tid: int
    connection_id: int
    announce: AnnounceRequest | None = None
    info_hashes: tuple[bytes, ...] = ()


def udp_parse_request(data: bytes) -> UdpRequest:
    if len(data) < 16:
        raise BadAnnounce(f"UDP request of {len(data)} bytes")
    conn, action, tid = _CONNECT_REQ.unpack_from(data)
    if action == UDP_CONNECT:
        if conn != UDP_MAGIC:
            raise BadAnnounce("bad protocol id")
        return UdpRequest(UDP_CONNECT, tid, conn)
    if action == UDP_ANNOUNCE:
        if len(data) < _ANNOUNCE_REQ.size:
            raise BadAnnounce("UDP announce too short")
        (_, _, _, ih, pid, down, left, up, ev, ip, key, numwant, port) = _ANNOUNCE_REQ.unpack_from(
            data
        )
        if ev not in _UDP_EVENT_NAMES:
            raise BadAnnounce(f"invalid event {ev}")
        if port == 0:
            raise BadAnnounce("invalid port: 0")
        if max(down, left, up) > MAX_COUNTER:
            raise BadAnnounce("counter out of range")
        req = AnnounceRequest(
            ih, pid, port, up, down, left, _UDP_EVENT_NAMES[ev],
            DEFAULT_NUMWANT if numwant < 0 else min(numwant, MAX_NUMWANT),
            True, True, key.to_bytes(4, "big"),
            str(ipaddress.IPv4Address(ip)) if ip else None,
        )  # fmt: skip
        return UdpRequest(UDP_ANNOUNCE, tid, conn, announce=req)
    if action == UDP_SCRAPE:
        body = data[16:]
        if not body or len(body) % 20 or len(body) // 20 > UDP_MAX_SCRAPE_HASHES:
            raise BadAnnounce("UDP scrape needs 1..74 info-hashes")
        hashes = tuple(body[i : i + 20] for i in range(0, len(body), 20))
        return UdpRequest(UDP_SCRAPE, tid, conn, info_hashes=hashes)
    raise BadAnnounce(f"unknown UDP action {action}")


#: ``(info_hash, peer_id, left, event, numwant, port, ip)`` of a well-formed announce.
UdpAnnounceFields = tuple[bytes, bytes, int, str, int, int, int]


def udp_announce_fields(data: bytes) -> UdpAnnounceFields | None:
    """The fields of an announce that ``udp_parse_request`` would accept, or ``None``
    (it then says what is wrong). The server's common case, with no request object:
    building the frozen ``AnnounceRequest`` cost more than the rest of the parse."""
    if len(data) < _ANNOUNCE_REQ.size:
        return None
    (_, _, _, ih, pid, down, left, up, ev, ip, _, numwant, port) = _ANNOUNCE_REQ.unpack_from(data)
    if ev > 3 or not port or down > MAX_COUNTER or left > MAX_COUNTER or up > MAX_COUNTER:
        return None
    want = DEFAULT_NUMWANT if numwant < 0 else min(numwant, MAX_NUMWANT)
    return ih, pid, left, _UDP_EVENT_NAMES[ev], want, port, ip


def udp_encode_connect(tid: int, connection_id: int) -> bytes:
    return _CONNECT_RESP.pack(UDP_CONNECT, tid, connection_id)


def udp_encode_announce(
    tid: int, interval: int, leechers: int, seeders: int, peers: Iterable[bytes | bytearray]
) -> bytes:
    """``peers`` are compact addresses of one family (6 or 18 bytes each)."""
    cap = 0xFFFFFFFF
    head = _ANNOUNCE_RESP.pack(
        UDP_ANNOUNCE, tid, min(interval, cap), min(leechers, cap), min(seeders, cap)
    )
    return head + b"".join(peers)


def udp_encode_scrape(tid: int, stats: Sequence[ScrapeStats]) -> bytes:
    cap = 0xFFFFFFFF
    return _HEAD.pack(UDP_SCRAPE, tid) + b"".join(
        _SCRAPE_ENTRY.pack(min(s.complete, cap), min(s.downloaded, cap), min(s.incomplete, cap))
        for s in stats
    )


def udp_encode_error(tid: int, message: str, limit: int = 8 + 512) -> bytes:
    """An error answer of at most ``limit`` bytes (the message is cut to fit)."""
    return (_HEAD.pack(UDP_ERROR, tid) + message.encode("utf-8")[:512])[: max(8, limit)]


def udp_peers_for(peers: Iterable[bytes], ipv6: bool) -> list[bytes]:
    """The compact addresses a BEP 15 answer may carry: an answer has no family
    field, so a client asking over IPv4 reads 6-byte entries and one asking over
    IPv6 18-byte ones (as opentracker); the other family's peers are left out."""
    size = 18 if ipv6 else 6
    return [c for c in peers if len(c) == size]


#: Length of one epoch of connection ids; an id is accepted in its epoch and the next,
#: so for 60 to 120 s (BEP 15: a client uses one for at most a minute).
UDP_ID_EPOCH = 60.0


class UdpConnectionIds:
    """BEP 15 connection ids with no per-client state (as opentracker does).

    An id is a keyed hash (BLAKE2b, 8 bytes) of the current epoch and the
    client's IP address: the per-epoch key rotates every ``UDP_ID_EPOCH``
    seconds, derived from ``secret``, so processes given the same secret
    (``--workers``) accept each other's ids. A spoofed source never sees the id
    sent to the real address, an id copied from another address does not
    match, and one older than two epochs is refused: a peer list only ever
    goes to an address that proved it receives our datagrams.

    The address, not the port: libtorrent keeps one process-wide cache of ids
    per tracker address, shared by every session and listen socket and not
    dropped on an error, so an id bound to the port locked a second socket of
    the same process out for as long as the first kept it fresh (seen: a
    libtorrent leech that never got a peer). The port would add nothing
    against spoofing: only a program on the same host could replay from
    another port, and it can ask for its own id.
    """

    __slots__ = ("secret", "epoch", "_keys")

    def __init__(self, secret: bytes, epoch: float = UDP_ID_EPOCH) -> None:
        if not 16 <= len(secret) <= 64:
            raise ValueError("secret must be 16..64 bytes")
        self.secret, self.epoch = secret, epoch
        self._keys: dict[int, bytes] = {}  # epoch number -> its key (the last two kept)

    def _key(self, n: int) -> bytes:
        key = self._keys.get(n)
        if key is None:
            key = hashlib.blake2b(n.to_bytes(8, "big", signed=True), key=self.secret).digest()
            self._keys = {m: k for m, k in self._keys.items() if m >= n - 1}
            self._keys[n] = key
        return key

    def _mac(self, n: int, addr: bytes) -> bytes:
        return hashlib.blake2b(addr, key=self._key(n), digest_size=8).digest()

    def issue(self, addr: bytes, now: float) -> int:
        """The id for the client at packed IP address ``addr`` at time ``now``."""
        return int.from_bytes(self._mac(int(now // self.epoch), addr), "big")

    def check(self, connection_id: int, addr: bytes, now: float) -> bool:
        given = connection_id.to_bytes(8, "big")
        n = int(now // self.epoch)
        return hmac.compare_digest(self._mac(n, addr), given) or hmac.compare_digest(
            self._mac(n - 1, addr), given
        )


# --------------------------------------------------------------------------- client policy


def retry_delay(failures: int, base: float = 15.0, cap: float = 1800.0) -> float:
    """Wait before retrying a tier whose every tracker failed ``failures`` times in a row."""
    return float(min(cap, base * 2 ** max(0, min(failures - 1, 16))))


def next_interval(resp: AnnounceResponse, floor: float, ceiling: float = MAX_INTERVAL) -> float:
    """Seconds until the next regular announce: the tracker's, held inside our bounds."""
    wanted = float(resp.interval)
    if resp.min_interval is not None:
        wanted = max(wanted, float(resp.min_interval))
    return max(floor, min(wanted, ceiling))


class Tiers:
    """BEP 12 tier order: shuffled within each tier once, then tried in order;
    a tracker that answers moves to the front of its tier."""

    def __init__(self, tiers: Sequence[Sequence[str]], rng: random.Random) -> None:
        self.tiers: list[list[str]] = []
        seen: set[str] = set()
        for tier in tiers:
            urls = [u for u in dict.fromkeys(tier) if u and u not in seen]
            seen.update(urls)
            if urls:
                rng.shuffle(urls)
                self.tiers.append(urls)

    def order(self) -> list[tuple[int, str]]:
        """Every (tier index, url) in the order they should be tried."""
        return [(t, url) for t, tier in enumerate(self.tiers) for url in tier]

    def promote(self, tier: int, url: str) -> None:
        urls = self.tiers[tier]
        if url in urls:
            urls.remove(url)
            urls.insert(0, url)

    def urls(self) -> list[str]:
        return [url for tier in self.tiers for url in tier]
