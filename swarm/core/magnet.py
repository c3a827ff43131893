"""BEP 9 magnet URIs: parse (hostile input, bounded) and build.

v1 links carry ``xt=urn:btih:<sha-1>``, v2 ones (BEP 52) ``xt=urn:btmh:1220<sha-256>``
(a multihash: 0x12 = SHA-256, 0x20 = 32 bytes), hybrids both.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from swarm.errors import MagnetError

MAX_URI_LENGTH = 64 * 1024
MAX_ITEMS = 100  # trackers, peers, web seeds each
MAX_SELECT = 10_000  # file indexes from so=
MAX_FILE_INDEX = 1 << 20

_HEX40 = re.compile(r"[0-9a-fA-F]{40}\Z")
_B32 = re.compile(r"[A-Za-z2-7]{32}\Z")
_BTMH = re.compile(r"1220([0-9a-fA-F]{64})\Z")


@dataclass(slots=True)
class Magnet:
    #: 20-byte v1 info-hash; for a v2-only link the v2 one truncated to 20 bytes
    #: (what handshakes, trackers and the DHT use)
    info_hash: bytes
    name: str | None = None
    trackers: list[str] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    web_seeds: list[str] = field(default_factory=list)
    select_only: list[int] | None = None
    info_hash_v2: bytes | None = None  # BEP 52 SHA-256 info-hash (v2 and hybrid)

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    @property
    def v2_only(self) -> bool:
        return self.info_hash_v2 is not None and self.info_hash == self.info_hash_v2[:20]

    def to_uri(self) -> str:
        parts = [] if self.v2_only else [f"xt=urn:btih:{self.info_hash.hex()}"]
        if self.info_hash_v2 is not None:
            parts.append(f"xt=urn:btmh:1220{self.info_hash_v2.hex()}")
        if self.name:
            parts.append("dn=" + quote(self.name, safe=""))
        parts += ["tr=" + quote(t, safe="") for t in self.trackers]
        parts += ["ws=" + quote(w, safe="") for w in self.web_seeds]
        for host, port in self.peers:
            text = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            parts.append("x.pe=" + quote(text, safe=":[]"))
        if self.select_only:
            parts.append("so=" + ",".join(str(i) for i in self.select_only))
        return "magnet:?" + "&".join(parts)


def parse_magnet(uri: str) -> Magnet:
    """Parse a ``magnet:?`` URI; unknown parameters are ignored."""
    if not isinstance(uri, str):
        raise MagnetError("a magnet link must be text")
    if len(uri) > MAX_URI_LENGTH:
        raise MagnetError(f"magnet link longer than {MAX_URI_LENGTH} characters")
    if not _encodable(uri):  # undecodable argv bytes arrive as lone surrogates
        raise MagnetError("magnet link is not valid UTF-8 text")
    uri = uri.strip()
    if uri[:8].lower() != "magnet:?":
        raise MagnetError("not a magnet link (it must start with 'magnet:?')")
    info_hash: bytes | None = None
    info_hash_v2: bytes | None = None
    name: str | None = None
    trackers: list[str] = []
    peers: list[tuple[str, int]] = []
    web_seeds: list[str] = []
    select: list[int] | None = None
    for pair in uri[8:].split("&"):
        if not pair:
            continue
        key, _, raw = pair.partition("=")
        key = key.lower()
        value = unquote(raw.replace("+", " ")) if key == "dn" else unquote(raw)
        if key == "xt" or (key.startswith("xt.") and key[3:].isdigit()):
            low = value.lower()
            if low.startswith("urn:btih:"):
                parsed = _btih(value[9:])
                if info_hash is not None and parsed != info_hash:
                    raise MagnetError("magnet link has two different btih info-hashes")
                info_hash = parsed
            elif low.startswith("urn:btmh:"):
                parsed = _btmh(value[9:])
                if info_hash_v2 is not None and parsed != info_hash_v2:
                    raise MagnetError("magnet link has two different btmh info-hashes")
                info_hash_v2 = parsed
        elif key == "dn":
            name = value[:4096]
        elif key == "tr" or (key.startswith("tr.") and key[3:].isdigit()):
            _add(trackers, value, "trackers")
        elif key == "ws":
            _add(web_seeds, value, "web seeds")
        elif key == "x.pe":
            peer = parse_peer(value)
            if peer not in peers:
                if len(peers) >= MAX_ITEMS:
                    raise MagnetError(f"magnet link has more than {MAX_ITEMS} peers")
                peers.append(peer)
        elif key == "so":
            select = _select(value)
    if info_hash is None:
        if info_hash_v2 is None:
            raise MagnetError("magnet link has no urn:btih or urn:btmh info-hash (xt)")
        info_hash = info_hash_v2[:20]
    return Magnet(info_hash, name, trackers, peers, web_seeds, select, info_hash_v2)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _digits(text: str) -> bool:
    """ASCII digits only: str.isdigit() also admits '²', which int() refuses."""
    return text.isascii() and text.isdigit()


def _btih(text: str) -> bytes:
    if _HEX40.match(text):
        return bytes.fromhex(text)
    if _B32.match(text):
        try:
            return base64.b32decode(text.upper())
        except binascii.Error as exc:  # pragma: no cover - the regex admits only valid input
            raise MagnetError(f"bad base32 info-hash {text!r}") from exc
    raise MagnetError(
        f"bad info-hash {text[:64]!r}: expected 40 hex digits or 32 base32 characters"
    )


def _btmh(text: str) -> bytes:
    match = _BTMH.match(text)
    if match is None:
        raise MagnetError(
            f"bad v2 info-hash {text[:72]!r}: expected 1220 and 64 hex digits (SHA-256 multihash)"
        )
    return bytes.fromhex(match.group(1))


def _add(items: list[str], value: str, what: str) -> None:
    value = value.strip()
    if not value or value in items:
        return
    if len(items) >= MAX_ITEMS:
        raise MagnetError(f"magnet link has more than {MAX_ITEMS} {what}")
    items.append(value)


def parse_peer(text: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port); also used for ``--peer``."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise MagnetError(f"bad peer address {text[:80]!r}: expected [v6]:port")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or ":" in host:
            raise MagnetError(f"bad peer address {text[:80]!r}: expected host:port")
    if not host or len(host) > 253 or any(c.isspace() or c in "/@" for c in host):
        raise MagnetError(f"bad peer address {text[:80]!r}: bad host")
    if not _digits(port_text) or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise MagnetError(f"bad peer address {text[:80]!r}: port must be 1-65535")
    return host, int(port_text)


def _select(text: str) -> list[int]:
    """BEP 53 ``so=0,2,4-6``; bounded so a huge range cannot eat memory."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        first, dash, last = part.partition("-")
        if not _digits(first) or (dash and not _digits(last)):
            raise MagnetError(f"bad file selection {part[:40]!r} in so=")
        lo = int(first[:8])
        hi = int(last[:8]) if dash else lo
        if len(first) > 7 or len(last) > 7 or lo > hi or hi >= MAX_FILE_INDEX:
            raise MagnetError(f"bad file selection {part[:40]!r} in so=")
        if len(out) + hi - lo + 1 > MAX_SELECT:
            raise MagnetError(f"file selection so= names more than {MAX_SELECT} files")
        out.extend(range(lo, hi + 1))
    return sorted(set(out))
