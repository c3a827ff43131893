"""BEP 14 Local Service Discovery: the UDP multicast glue (IPv4 and IPv6).

Decisions (parsing, rate limits) live in :mod:`swarm.core.lsd`; this module
only owns the socket.

Do NOT create an ``LSDService`` for a session bound to a loopback address
(``--host 127.0.0.1``) or run with ``--no-lsd``: check
``swarm.core.lsd.lsd_allowed(host)`` first. The constructor refuses a
loopback ``interface`` as a last guard, but with ``interface=None`` the
kernel picks the multicast route, which normally leaves the machine.

IPv6 (``ipv6=True``, group ff15::efc0:988f) takes an interface *name* (e.g.
``"eth0"``) since IPv6 multicast is chosen by interface index; peers it
reports often have link-local addresses with a scope (``fe80::1%eth0``),
which ``asyncio.open_connection`` accepts as they are. One service per family.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterable

from swarm.core.lsd import (
    LSD_GROUP4,
    LSD_GROUP6,
    LSD_PORT,
    MIN_INTERVAL,
    RateLimiter,
    build_announces,
    parse_announce,
)
from swarm.errors import ProtocolError

log = logging.getLogger(__name__)

#: Repeats of one (source, port, info-hash) within this many seconds are dropped.
RECEIVE_INTERVAL = 10.0

OnPeer = Callable[[bytes, str, int], None]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, service: LSDService) -> None:
        self.service = service

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.service.on_datagram(data, str(addr[0]))

    def error_received(self, exc: Exception) -> None:
        log.debug("LSD socket error: %s", exc)


class LSDService:
    """Announce our torrents on the LAN and report peers announcing theirs.

    ``on_peer(info_hash, ip, port)`` is called for every announced info-hash
    (any torrent: the engine filters the ones it has), at most once per
    ``RECEIVE_INTERVAL`` per (ip, port, info-hash); our own datagrams (same
    cookie) are ignored. ``interface`` is, for IPv4, the address of the LAN
    interface to send and join on, for IPv6 the interface name (None: the
    kernel's choice). ``min_interval`` is the per-torrent announce limit
    (BEP 14: a minute; tests lower it).
    """

    def __init__(
        self,
        port: int,
        on_peer: OnPeer,
        interface: str | None = None,
        *,
        ipv6: bool = False,
        min_interval: float = MIN_INTERVAL,
        group: str | None = None,
        group_port: int = LSD_PORT,
    ) -> None:
        if interface is not None:
            if ipv6:
                if interface == "lo":
                    raise ValueError("LSD on the loopback interface: do not start LSD")
            elif ipaddress.IPv4Address(interface).is_loopback:
                raise ValueError("LSD on a loopback interface: do not start LSD for such sessions")
        self.port = port
        self.on_peer = on_peer
        self.interface = interface
        self.ipv6 = ipv6
        self.group = group or (LSD_GROUP6 if ipv6 else LSD_GROUP4)
        self.group_port = group_port
        self.cookie = os.urandom(6).hex()
        self._send_limit = RateLimiter(min_interval)
        self._recv_limit = RateLimiter(RECEIVE_INTERVAL)
        self._transport: asyncio.DatagramTransport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dest: tuple[str, int] | tuple[str, int, int, int] = (self.group, group_port)
        self.received = 0
        self.rejected = 0

    def _make_socket6(self) -> socket.socket:
        ifindex = socket.if_nametoindex(self.interface) if self.interface else 0
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind((self.group, self.group_port, 0, ifindex))
            except OSError:
                sock.bind(("::", self.group_port))
            mreq = socket.inet_pton(socket.AF_INET6, self.group) + struct.pack("@I", ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)
            if ifindex:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._dest = (self.group, self.group_port, 0, ifindex)
        return sock

    def _make_socket(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            try:
                # On Linux, binding to the group keeps unicast junk to :6771 out.
                sock.bind((self.group, self.group_port))
            except OSError:
                sock.bind(("", self.group_port))
            local = socket.inet_aton(self.interface or "0.0.0.0")
            mreq = socket.inet_aton(self.group) + local
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
            if self.interface is not None:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def start(self) -> None:
        if self._transport is not None:
            return
        self._loop = asyncio.get_running_loop()
        sock = self._make_socket6() if self.ipv6 else self._make_socket()
        transport, _ = await self._loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
        self._transport = transport

    def announce(self, info_hashes: Iterable[bytes]) -> int:
        """Send BT-SEARCH for the torrents not announced within ``min_interval``.

        Returns how many info-hashes went out. Call it periodically (e.g. every
        five minutes, and once when a torrent is added).
        """
        if self._transport is None or self._loop is None:
            raise RuntimeError("LSDService not started")
        due = self._send_limit.take(info_hashes, self._loop.time())
        for msg in build_announces(self.port, due, self.cookie, ipv6=self.ipv6):
            self._transport.sendto(msg, self._dest)
        return len(due)

    async def run(self, info_hashes: Callable[[], Iterable[bytes]], period: float = 300.0) -> None:
        """Start, then announce ``info_hashes()`` every ``period`` seconds until cancelled.

        Torrents added in between can be announced at once with ``announce``;
        the rate limit keeps either path from flooding the LAN.
        """
        await self.start()
        try:
            while True:
                self.announce(info_hashes())
                await asyncio.sleep(period)
        finally:
            self.close()

    def on_datagram(self, data: bytes, ip: str) -> None:
        try:
            ann = parse_announce(data)
        except ProtocolError as exc:
            self.rejected += 1
            log.debug("bad LSD datagram from %s: %s", ip, exc)
            return
        if ann.cookie == self.cookie:
            return
        self.received += 1
        now = self._loop.time() if self._loop is not None else 0.0
        for ih in ann.info_hashes:
            if self._recv_limit.allow((ip, ann.port, ih), now):
                self.on_peer(ih, ip, ann.port)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
