"""The UDP tracker (BEP 15): one datagram in, one out, through the same ``Tracker``.

Connection ids carry no state here: ``UdpConnectionIds`` derives them from a
secret, the epoch and the client's IP address, so any worker given the
same secret checks any id, and nothing grows per client. Before an address
has shown a valid id, nothing is answered with more bytes than it sent (a
connect answer is 16 bytes for a 16-byte request; an error is cut to the
request's length), so a spoofed source can neither get a peer list nor use
the tracker to amplify a flood. Datagrams too short to answer, or of an
unknown action, are counted and dropped or refused; nothing here raises.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any

from swarm.core.announce import (
    UDP_ANNOUNCE,
    UDP_CONNECT,
    UDP_MAGIC,
    UDP_SCRAPE,
    BadAnnounce,
    UdpConnectionIds,
    pack_peer,
    udp_encode_connect,
    udp_encode_error,
    udp_parse_request,
)
from tracker.app import Tracker

log = logging.getLogger("swarm.tracker")

_HEAD = struct.Struct(">QII")  # connection id (or protocol magic), action, transaction id
#: Announces and scrapes waiting on the store (Redis) at once; more are dropped
#: (the client retries), so a flood cannot pile up tasks.
MAX_PENDING = 4096
#: Proven ``(host, connection id)`` pairs ``UdpFront`` remembers at most (about 2 MB).
PROVEN_CACHE = 16384


class UdpFront(asyncio.DatagramProtocol):
    """Answers BEP 15 datagrams on one socket."""

    def __init__(
        self, tracker: Tracker, ids: UdpConnectionIds, clock: Callable[[], float] = time.time
    ) -> None:
        self.tracker, self.ids = tracker, ids
        self.clock = clock  # unix seconds; tests move it to expire connection ids
        self.transport: asyncio.DatagramTransport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None  # set when the socket is ours
        self.outbox: list[tuple[bytes, Any]] = []  # answers to send this loop round
        #: ``(host, connection id)`` pairs checked in this epoch of ids, to their packed
        #: IP: the next datagram from one skips parsing the address and the keyed hash
        #: (a quarter of an announce's cost). Only valid ids get in; emptied each epoch
        #: (the same id is then checked again) and when full, so it stays small.
        self.proven: dict[tuple[Any, int], bytes] = {}
        self.proven_from = self.proven_until = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.loop = asyncio.get_running_loop()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for task in list(self.tasks):
            task.cancel()

    def error_received(self, exc: Exception) -> None:
        log.debug("event=udp_error error=%r", exc)  # an ICMP error for an earlier answer

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self._answer(data, addr)
        except Exception:  # a bug must cost one datagram, never the endpoint
            log.exception("event=internal_error path=udp")

    def _send(self, body: bytes, addr: Any) -> None:
        """Queue an answer: the queue goes out once the loop has handed over every
        datagram it read in this round, so answers leave in a burst and a client is
        woken once for several instead of once each (without a loop: at once)."""
        outbox = self.outbox
        outbox.append((body, addr))
        if len(outbox) == 1:
            if self.loop is None:
                self._flush()
            else:
                self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        outbox, self.outbox = self.outbox, []
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        sendto = transport.sendto
        for body, addr in outbox:
            sendto(body, addr)

    def _answer(self, data: bytes, addr: Any) -> None:
        tracker, size = self.tracker, len(data)
        metrics, counters = tracker.metrics, tracker.counters
        if size < _HEAD.size or not addr[1]:
            metrics.udp_dropped.inc()
            return
        connection_id, action, tid = _HEAD.unpack_from(data)
        now = self.clock()
        if not self.proven_from <= now < self.proven_until:
            self._new_epoch(now)
        proven = self.proven
        key = (addr[0], connection_id)
        ip = proven.get(key) if action != UDP_CONNECT else None
        if ip is None:
            try:
                # an IPv4-mapped address counts as IPv4
                ip = pack_peer(str(addr[0]), int(addr[1]))[:-2]
            except ValueError:
                metrics.udp_dropped.inc()
                return
            if action == UDP_CONNECT:
                if connection_id != UDP_MAGIC:
                    metrics.udp_dropped.inc()
                    self._send(udp_encode_error(tid, "bad protocol id", size), addr)
                    return
                counters.udp_connects += 1
                metrics.udp_connects.inc()
                self._send(udp_encode_connect(tid, self.ids.issue(ip, now)), addr)
                return
            if not self.ids.check(connection_id, ip, now):
                counters.udp_bad_ids += 1
                metrics.udp_bad_ids.inc()
                self._send(udp_encode_error(tid, "invalid connection id", size), addr)
                return
            if len(proven) >= PROVEN_CACHE:
                proven.clear()
            proven[key] = ip
        # from here the address is proven: answers may be larger than requests
        if action == UDP_ANNOUNCE:
            body = tracker.udp_announce_datagram(data, ip, tid)
            if body is not None:
                self._send(body, addr)
                return
        try:
            req = udp_parse_request(data)
        except BadAnnounce as exc:
            if action == UDP_ANNOUNCE:
                self._send(tracker.udp_refused(str(exc), tid), addr)
            else:  # a mis-sized scrape or an unknown action
                metrics.udp_dropped.inc()
                self._send(udp_encode_error(tid, str(exc)), addr)
            return
        if req.action == UDP_ANNOUNCE:
            assert req.announce is not None
            host, ipv6 = str(addr[0]), len(ip) == 16
            body = tracker.udp_announce_nowait(req.announce, host, tid, ipv6)
            if body is not None:
                self._send(body, addr)
            else:
                self._later(tracker.udp_announce(req.announce, host, tid, ipv6), addr)
        elif req.action == UDP_SCRAPE:
            self._later(tracker.udp_scrape(req.info_hashes, tid), addr)

    def _new_epoch(self, now: float) -> None:
        """The ids proven so far are checked again from now (the epoch moved on)."""
        epoch = self.ids.epoch
        self.proven_from = now // epoch * epoch
        self.proven_until = self.proven_from + epoch
        self.proven.clear()

    def _later(self, answer: Awaitable[bytes], addr: Any) -> None:
        if len(self.tasks) >= MAX_PENDING:
            self.tracker.metrics.udp_dropped.inc()
            answer.close()  # type: ignore[attr-defined]
            return
        task = asyncio.get_running_loop().create_task(self._reply(answer, addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reply(self, answer: Awaitable[bytes], addr: Any) -> None:
        try:
            body = await answer
        except Exception:
            log.exception("event=internal_error path=udp")
            return
        self._send(body, addr)


def udp_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A bound UDP socket (SO_REUSEPORT for ``--workers``: each worker binds its own and
    the kernel spreads clients over them by address and port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and host == "::":
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((host or "0.0.0.0", port))
        s.setblocking(False)
    except OSError:
        s.close()
        raise
    return s


async def start_udp(
    tracker: Tracker, ids: UdpConnectionIds, sock: socket.socket
) -> tuple[asyncio.DatagramTransport, UdpFront]:
    loop = asyncio.get_running_loop()
    transport, front = await loop.create_datagram_endpoint(
        lambda: UdpFront(tracker, ids), sock=sock
    )
    return transport, front
