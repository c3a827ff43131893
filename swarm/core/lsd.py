"""BEP 14 Local Service Discovery: BT-SEARCH messages and rate limits.

A BT-SEARCH is an HTTP-like datagram sent to 239.192.152.143:6771::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: <listen port>\\r\\n
    Infohash: <40 hex digits>\\r\\n     (one or more)
    cookie: <opaque, to recognise our own datagrams>\\r\\n
    \\r\\n\\r\\n

Parsing is strict (anyone on the LAN can send us anything) and bounded:
``MAX_DATAGRAM`` bytes, ``MAX_INFOHASHES`` per message. Building splits many
info-hashes over several datagrams that each fit an Ethernet MTU.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from swarm.errors import ProtocolError

LSD_GROUP4 = "239.192.152.143"
LSD_GROUP6 = "ff15::efc0:988f"
LSD_PORT = 6771
HOST4 = f"{LSD_GROUP4}:{LSD_PORT}"
HOST6 = f"[{LSD_GROUP6}]:{LSD_PORT}"

#: What we accept; what we send stays under ``SEND_LIMIT`` (an MTU minus headers).
MAX_DATAGRAM = 4096
SEND_LIMIT = 1400
MAX_INFOHASHES = 64
MAX_COOKIE = 64
#: BEP 14: announce a torrent at most about once a minute.
MIN_INTERVAL = 60.0

_REQUEST_LINE = b"BT-SEARCH * HTTP/1.1"
_HEX = frozenset(b"0123456789abcdefABCDEF")
_TOKEN = frozenset(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_.")


@dataclass(slots=True, frozen=True)
class LSDAnnounce:
    port: int
    info_hashes: tuple[bytes, ...]
    cookie: str | None = None
    host: str | None = None


def lsd_allowed(host: str | None) -> bool:
    """Whether a session bound to ``host`` may use LSD: never for loopback.

    A session on 127.0.0.1/::1 promised (cli.md) to send nothing off the
    machine; LAN multicast would break that.
    """
    if host is None or host in ("", "0.0.0.0", "::"):
        return True
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True  # a host name: the engine resolves; not loopback by itself


def build_announces(
    port: int, info_hashes: Iterable[bytes], cookie: str | None = None, *, ipv6: bool = False
) -> list[bytes]:
    """BT-SEARCH datagrams announcing ``info_hashes`` (as many as needed)."""
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    if cookie is not None and (
        not cookie or len(cookie) > MAX_COOKIE or not _TOKEN.issuperset(cookie.encode())
    ):
        raise ValueError(f"bad cookie {cookie!r}")
    head = b"%s\r\nHost: %s\r\nPort: %d\r\n" % (
        _REQUEST_LINE,
        (HOST6 if ipv6 else HOST4).encode(),
        port,
    )
    tail = (b"cookie: %s\r\n" % cookie.encode() if cookie else b"") + b"\r\n\r\n"
    lines: list[bytes] = []
    out: list[bytes] = []
    for ih in info_hashes:
        if len(ih) != 20:
            raise ValueError("info-hash must be 20 bytes")
        line = b"Infohash: %s\r\n" % ih.hex().encode()
        size = len(head) + len(tail) + sum(map(len, lines)) + len(line)
        if lines and (size > SEND_LIMIT or len(lines) >= MAX_INFOHASHES):
            out.append(head + b"".join(lines) + tail)
            lines = []
        lines.append(line)
    if lines:
        out.append(head + b"".join(lines) + tail)
    return out


def parse_announce(data: bytes) -> LSDAnnounce:
    """Parse one BT-SEARCH datagram; anything malformed raises ProtocolError."""
    if len(data) > MAX_DATAGRAM:
        raise ProtocolError(f"LSD datagram of {len(data)} bytes")
    data = bytes(data)
    if b"\r\n\r\n" not in data:
        raise ProtocolError("unterminated BT-SEARCH")
    lines = data.split(b"\r\n")
    if lines[0] != _REQUEST_LINE:
        raise ProtocolError("not a BT-SEARCH")
    # The header block must end with an empty line; BEP 14 adds another.
    try:
        blank = lines.index(b"", 1)
    except ValueError as exc:
        raise ProtocolError("unterminated BT-SEARCH") from exc
    if any(lines[blank:]):
        raise ProtocolError("data after the BT-SEARCH headers")
    port: int | None = None
    host: str | None = None
    cookie: str | None = None
    hashes: list[bytes] = []
    for line in lines[1:blank]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise ProtocolError("malformed LSD header line")
        key = name.lower()
        value = value.strip()
        if key == b"port":
            if port is not None:
                raise ProtocolError("duplicate LSD Port")
            if not value.isdigit() or len(value) > 5 or not 0 < int(value) < 65536:
                raise ProtocolError("bad LSD Port")
            port = int(value)
        elif key == b"infohash":
            if len(value) != 40 or not _HEX.issuperset(value):
                raise ProtocolError("bad LSD Infohash")
            if len(hashes) >= MAX_INFOHASHES:
                raise ProtocolError("too many LSD Infohash lines")
            ih = bytes.fromhex(value.decode("ascii"))
            if ih not in hashes:
                hashes.append(ih)
        elif key == b"cookie":
            if not value or len(value) > MAX_COOKIE or not _TOKEN.issuperset(value):
                raise ProtocolError("bad LSD cookie")
            cookie = value.decode("ascii")
        elif key == b"host":
            host = value.decode("latin-1")[:64]
        # other headers: ignored
    if port is None:
        raise ProtocolError("LSD announce without Port")
    if not hashes:
        raise ProtocolError("LSD announce without Infohash")
    return LSDAnnounce(port, tuple(hashes), cookie, host)


class RateLimiter:
    """At most one event per key per ``interval`` seconds; bounded memory.

    Sending side: key = info-hash (BEP 14's once a minute). Receiving side:
    key = (source ip, port, info-hash), so a flooding host cannot make the
    engine dial the same peer over and over. The oldest keys are forgotten
    past ``max_keys``.
    """

    __slots__ = ("interval", "max_keys", "_last")

    def __init__(self, interval: float = MIN_INTERVAL, max_keys: int = 4096) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._last: OrderedDict[Hashable, float] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        self._last.move_to_end(key)
        while len(self._last) > self.max_keys:
            self._last.popitem(last=False)
        return True

    def take(self, keys: Iterable[bytes], now: float) -> list[bytes]:
        """The keys that may go out now (and are recorded as sent)."""
        return [k for k in dict.fromkeys(keys) if self.allow(k, now)]
