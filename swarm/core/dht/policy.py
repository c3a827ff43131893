"""Where the DHT may send packets.

A node bound to a loopback address must never talk to the outside world: its
default bootstrap list is empty and every address it learns outside loopback
is dropped (it could not reach them anyway, and tests must stay on the host).
"""

from __future__ import annotations

import ipaddress

from swarm.errors import BadInput

PUBLIC_BOOTSTRAP: tuple[tuple[str, int], ...] = (
    ("router.bittorrent.com", 6881),
    ("dht.transmissionbt.com", 6881),
    ("router.utorrent.com", 6881),
)


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'; False for names and garbage."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def default_bootstrap(bind_host: str) -> tuple[tuple[str, int], ...]:
    return () if is_loopback(bind_host) else PUBLIC_BOOTSTRAP


def address_allowed(host: str, port: int, loopback_only: bool) -> bool:
    """May we send to / remember this node address? (Port 0 is never valid.)"""
    if not 0 < port <= 0xFFFF:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if loopback_only:
        return ip.is_loopback
    return not (ip.is_unspecified or ip.is_multicast)


def parse_hostport(text: str, default_port: int = 6881) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT``, or a bare host (for ``--dht-bootstrap``)."""
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise BadInput(f"bad DHT node address {text!r}: missing ']'")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise BadInput(f"bad DHT node address {text!r}")
            port_text = rest[1:]
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not host:
        raise BadInput(f"bad DHT node address {text!r}: no host")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) <= 0xFFFF:
        raise BadInput(f"bad DHT node address {text!r}: port must be 1-65535")
    return host, int(port_text)
