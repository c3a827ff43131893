"""Our Azureus-style peer id, and human names for other clients' ids.

The 12 random characters are alphanumeric (from random bytes) rather than raw
bytes: trackers, logs and ``--json`` output show them readably, and 62**12 is
still 71 bits, plenty to tell our own connections apart.
"""

from __future__ import annotations

import os
import re

PREFIX = b"-SW"
_ALNUM = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VERSION_RE = re.compile(r"[0-9A-Z]{4}")

#: Azureus-style two-letter codes ("-XXvvvv-").
AZUREUS_CLIENTS = {
    "AG": "Ares",
    "AR": "Arctic",
    "AZ": "Vuze",
    "BB": "BitBuddy",
    "BC": "BitComet",
    "BF": "Bitflu",
    "BI": "BiglyBT",
    "BT": "BitTorrent",
    "BW": "BitWombat",
    "CD": "Enhanced CTorrent",
    "DE": "Deluge",
    "FD": "Free Download Manager",
    "FG": "FlashGet",
    "FT": "FoxTorrent",
    "HL": "Halite",
    "KT": "KTorrent",
    "LP": "Lphant",
    "LT": "libtorrent (Rasterbar)",
    "lt": "libTorrent (rakshasa)",
    "LW": "LimeWire",
    "MG": "MediaGet",
    "PD": "Pando",
    "qB": "qBittorrent",
    "QD": "QQDownload",
    "RT": "Retriever",
    "SD": "Thunder",
    "SW": "swarm",
    "TL": "Tribler",
    "TR": "Transmission",
    "TT": "TuoTu",
    "UM": "µTorrent Mac",
    "UT": "µTorrent",
    "UW": "µTorrent Web",
    "WD": "WebTorrent Desktop",
    "WW": "WebTorrent",
    "XL": "Xunlei",
}

#: Shad0w-style one-letter codes ("Xvvv--...").
SHADOW_CLIENTS = {
    "A": "ABC",
    "O": "Osprey Permaseed",
    "Q": "BTQueue",
    "R": "Tribler",
    "S": "Shadow's client",
    "T": "BitTornado",
    "U": "UPnP NAT Bit Torrent",
}

_AZ_RE = re.compile(r"-([A-Za-z]{2})([0-9A-Za-z]{4})-")
_SHADOW_RE = re.compile(r"([AOQRSTU])([0-9A-Za-z.]{3,5}?)-{2,}")
_MAINLINE_RE = re.compile(r"([MQ])(\d{1,2})-(\d{1,2})-(\d{1,2})-")
_ARIA2_RE = re.compile(r"A2-(\d{1,3})-(\d{1,3})-(\d{1,3})-")


def make_peer_id(version: str = "0100", rand: bytes | None = None) -> bytes:
    """``-SW<version>-`` + 12 alphanumeric characters drawn from ``rand``.

    ``rand`` (at least 12 bytes) makes this deterministic for tests; by
    default it comes from ``os.urandom``.
    """
    if not _VERSION_RE.fullmatch(version):
        raise ValueError(f"version must be 4 characters of 0-9A-Z, got {version!r}")
    if rand is None:
        rand = os.urandom(12)
    if len(rand) < 12:
        raise ValueError("need 12 random bytes")
    tail = bytes(_ALNUM[b % len(_ALNUM)] for b in rand[:12])
    return PREFIX + version.encode("ascii") + b"-" + tail


def _version_digit(c: str) -> int | None:
    """Azureus/Shad0w version characters: 0-9, then A-Z = 10..35, a-z = 36..61."""
    if c.isdigit():
        return int(c)
    if "A" <= c <= "Z":
        return ord(c) - ord("A") + 10
    if "a" <= c <= "z":
        return ord(c) - ord("a") + 36
    if c == ".":
        return 62
    return None


def _azureus_version(code: str, v: str) -> str:
    if code == "UT" or code == "UM" or code == "UW":  # µTorrent: 3 digits + build letter
        head = ".".join(str(_version_digit(c)) for c in v[:3])
        return head + ("" if v[3] == "0" else f" ({v[3]})")
    if code == "TR" and v[3] in "XZB":  # Transmission betas and nightlies
        return ".".join(str(_version_digit(c)) for c in v[:3]) + " (dev)"
    digits = [_version_digit(c) for c in v]
    parts = [str(d) for d in digits]
    if digits[3] == 0:
        parts = parts[:3]
    return ".".join(parts)


def client_name(peer_id: bytes) -> str:
    """A human name such as ``"Transmission 3.0.0"`` for a peer id."""
    text = bytes(peer_id[:20]).decode("latin-1")
    m = _AZ_RE.match(text)
    if m and m.group(1) in AZUREUS_CLIENTS:
        return f"{AZUREUS_CLIENTS[m.group(1)]} {_azureus_version(m.group(1), m.group(2))}"
    m = _ARIA2_RE.match(text)
    if m:
        return f"aria2 {int(m.group(1))}.{int(m.group(2))}.{int(m.group(3))}"
    m = _MAINLINE_RE.match(text)
    if m:
        name = "BitTorrent (Mainline)" if m.group(1) == "M" else "Queen Bee"
        return f"{name} {int(m.group(2))}.{int(m.group(3))}.{int(m.group(4))}"
    m = _SHADOW_RE.match(text)
    if m:
        version = ".".join(str(_version_digit(c)) for c in m.group(2))
        return f"{SHADOW_CLIENTS[m.group(1)]} {version}"
    if m := _AZ_RE.match(text):
        return f"unknown -{m.group(1)}- client {m.group(2)}"
    return f"unknown ({bytes(peer_id[:8]).hex()})"
