"""Peer discovery for a session: the DHT node, LAN multicast (LSD) and ut_pex.

A ``Discovery`` belongs to one ``Session``. It owns the session's
``DHTNode`` and ``LSDService`` and runs, per torrent, the loops that find
peers (DHT get_peers/announce, LSD announces); every peer found goes to
``torrent.add_peer(host, port, source)``. ``PexManager`` (one per torrent)
receives and sends ut_pex (BEP 11) messages.

Rules that hold everywhere here:
- never for private torrents (BEP 27): no DHT, no LSD, no PEX;
- a session bound to a loopback address never sends anything off the machine:
  its DHT node binds loopback with no public routers (``DHTNode`` enforces it),
  LSD is not started (``lsd_allowed``), and peers outside loopback that anyone
  tells us about are dropped;
- a peer heard of by discovery never makes us connect to an unspecified,
  multicast or broadcast address, nor to ourselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.core import wire
from swarm.core.admission import SourceBudget
from swarm.core.dht.policy import is_loopback
from swarm.core.extensions import (
    PEX_REACHABLE,
    PEX_SEED,
    PexPeer,
    PexState,
    decode_pex,
    encode_pex,
)
from swarm.core.lsd import lsd_allowed
from swarm.errors import SwarmError

if TYPE_CHECKING:
    from swarm.dht import DHTNode
    from swarm.lsd import LSDService
    from swarm.peer import PeerConnection
    from swarm.session import Session
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.discovery")

#: A DHT lookup while a torrent wants peers, then this often.
DHT_LOOKUP_INTERVAL = 300.0
#: An announce (a lookup too) this often, downloading or seeding.
DHT_ANNOUNCE_INTERVAL = 900.0
#: After a lookup that found nobody, retry sooner: these delays, then the interval.
DHT_RETRY_DELAYS = (5.0, 15.0, 30.0, 60.0, 120.0)
#: One lookup gives up after this many seconds.
DHT_LOOKUP_TIMEOUT = 30.0
#: Session.start waits this long for the DHT node (bind + resolving the routers' names),
#: then lets it finish in the background: an offline LAN must not stall start-up.
DHT_START_WAIT = 3.0
#: LSD: announce every torrent this often (and each torrent once when added).
LSD_INTERVAL = 300.0
#: ut_pex: at most one message a minute to each peer (BEP 11).
PEX_INTERVAL = 60.0
#: ut_pex: new peers taken from one message, and from one connection per minute.
PEX_MAX_PER_MESSAGE = 30
PEX_MAX_PER_MINUTE = 60


def default_state_dir() -> Path:
    """``$SWARM_STATE_DIR``, else ``$XDG_STATE_HOME/swarm``, else ``~/.local/state/swarm``."""
    env = os.environ.get("SWARM_STATE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "swarm"


def peer_address_ok(
    host: str, port: int, *, loopback_only: bool, sender_local: bool = True
) -> bool:
    """May we connect to a peer someone told us about (DHT, LSD, PEX)?

    Never port 0, unspecified, multicast or broadcast addresses. A loopback-bound
    session only takes loopback peers; loopback peers are only taken from a
    sender that is itself local (a stranger must not point us at our own services).
    """
    if not 0 < port < 65536:
        return False
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if ip.is_unspecified or ip.is_multicast:
        return False
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return False
    if loopback_only:
        return ip.is_loopback
    return sender_local or not ip.is_loopback


def _is_local_ip(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class Discovery:
    """The session's DHT node and LSD service, and the per-torrent discovery loops."""

    def __init__(
        self,
        session: Session,
        *,
        enable_dht: bool = False,
        enable_lsd: bool = False,
        dht_bootstrap: Iterable[tuple[str, int]] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.session = session
        self.host = session.host
        self.loopback_only = is_loopback(self.host)
        self.want_dht = enable_dht
        self.want_lsd = enable_lsd and lsd_allowed(self.host)
        self.dht_bootstrap = None if dht_bootstrap is None else list(dht_bootstrap)
        self.state_dir = state_dir
        self.dht: DHTNode | None = None
        self.lsd: LSDService | None = None
        self._loops: dict[bytes, asyncio.Task[None]] = {}
        self._dht_ready = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    # ------------------------------------------------------------ life cycle

    @property
    def dht_port(self) -> int | None:
        """The DHT's UDP port (for the BEP 5 port message), None when the DHT is off."""
        return self.dht.port if self.dht is not None and self.dht.port else None

    def node_count(self) -> int | None:
        return self.dht.node_count() if self.dht is not None else None

    async def start(self) -> None:
        if self.want_dht:
            task = self._spawn(self._start_dht())
            await asyncio.wait({task}, timeout=DHT_START_WAIT)
            if not task.done():
                log.info("DHT still starting (resolving its bootstrap routers); going on")
        if self.want_lsd:
            await self._start_lsd()
        elif self.session.enable_lsd and not lsd_allowed(self.host):
            log.info("LSD off: the session is bound to loopback (%s)", self.host)

    async def _start_dht(self) -> None:
        from swarm.dht import DHTNode

        state_file = None
        # A table of loopback nodes is worthless next time: only real sessions keep one.
        if self.state_dir is not None and not self.loopback_only:
            state_file = self.state_dir / ("dht6.state" if ":" in self.host else "dht.state")
        bootstrap = self.dht_bootstrap or None  # none given: the defaults (none on loopback)
        host = self.host or "0.0.0.0"
        ports = [self.session.port, 0] if self.session.port else [0]
        for port in ports:
            node = DHTNode(host, port or 0, bootstrap=bootstrap, state_file=state_file)
            try:
                await node.start(wait=False)
            except SwarmError as exc:
                log.info("%s", exc)
                await node.close()
                continue
            except BaseException:
                await node.close()
                raise
            self.dht = node
            self.session.dht = node  # the session's alias (magnet metadata lookups use it)
            self._dht_ready.set()
            log.info("DHT on %s:%d", host, node.port)
            return
        log.warning("DHT off: cannot bind a UDP port on %s", host)

    async def _start_lsd(self) -> None:
        from swarm.lsd import LSDService

        assert self.session.port is not None
        ipv6 = ":" in self.host
        iface = None if self.host in ("", "0.0.0.0", "::") or ipv6 else self.host
        try:
            svc = LSDService(self.session.port, self._on_lsd_peer, iface, ipv6=ipv6)
            await svc.start()
        except (OSError, ValueError) as exc:
            log.warning("LSD off: %s", exc)
            return
        self.lsd = svc
        self._spawn(self._lsd_loop())

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = list(self._loops.values()) + list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2)
        self._loops.clear()
        if self.lsd is not None:
            self.lsd.close()
        if self.dht is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.dht.close(), 5)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------ torrents

    def torrent_added(self, torrent: Torrent) -> None:
        if self._closed or torrent.meta.private:
            return
        if self.lsd is not None:
            with contextlib.suppress(OSError, RuntimeError):
                self.lsd.announce(list(torrent.meta.swarm_hashes))  # a hybrid: both (BEP 52)
        if self.want_dht and torrent.info_hash not in self._loops:
            task = asyncio.get_running_loop().create_task(self._dht_loop(torrent))
            self._loops[torrent.info_hash] = task
            task.add_done_callback(functools.partial(self._loop_done, torrent.info_hash))

    def _loop_done(self, ih: bytes, task: asyncio.Task[None]) -> None:
        if self._loops.get(ih) is task:
            del self._loops[ih]
        if not task.cancelled() and task.exception() is not None:
            log.warning("DHT loop failed: %s", task.exception())

    def torrent_removed(self, torrent: Torrent) -> None:
        task = self._loops.pop(torrent.info_hash, None)
        if task is not None:
            task.cancel()

    def on_port_message(self, peer_ip: str, port: int) -> None:
        """BEP 5: a peer told us its DHT port: ping it; it joins our table if it answers."""
        if self.dht is not None and 0 < port < 65536:
            self.dht.add_node(peer_ip, port)

    def _found(self, torrent: Torrent, host: str, port: int, source: str) -> bool:
        if torrent.stopped or torrent.meta.private:
            return False
        if not peer_address_ok(host, port, loopback_only=self.loopback_only):
            return False
        if port == self.session.port and (
            host == self.host or (host, port) in self.session.self_addresses
        ):
            return False
        torrent.add_peer(host, port, source)
        return True

    # ------------------------------------------------------------ DHT

    @staticmethod
    def _wants_peers(torrent: Torrent) -> bool:
        return torrent.state == "downloading" and not torrent.seed_only

    async def _dht_loop(self, torrent: Torrent) -> None:
        """While the torrent runs: a get_peers lookup when it starts and every few minutes
        while it wants peers (sooner after one that found nobody), an announce every
        quarter of an hour (sooner while no node takes it, e.g. during bootstrap)."""
        await self._dht_ready.wait()
        dht = self.dht
        assert dht is not None
        loop = asyncio.get_running_loop()
        hashes = torrent.meta.swarm_hashes  # a hybrid is looked up and announced under both
        next_announce = next_lookup = loop.time()
        misses = announce_misses = 0
        name = torrent.meta.name

        def on_peers(peers: list[tuple[str, int]]) -> None:
            for host, port in peers:
                self._found(torrent, host, port, "dht")

        while not torrent.stopped:
            now = loop.time()
            acted = False
            try:
                if self._wants_peers(torrent) and now >= next_lookup:
                    # iter_peers also yields what our own node stores; announce's lookup does not
                    found = 0
                    for ih in hashes:
                        async for host, port in dht.iter_peers(ih, timeout=DHT_LOOKUP_TIMEOUT):
                            found += self._found(torrent, host, port, "dht")
                    log.info("%s: DHT lookup: %d new peers", name, found)
                    if found == 0 and not torrent.peers:
                        next_lookup = loop.time() + self._retry(misses)
                        misses += 1
                    else:
                        next_lookup = loop.time() + DHT_LOOKUP_INTERVAL
                        misses = 0
                    acted = True
                if now >= next_announce and self.session.port:
                    acks = 0
                    for ih in hashes:
                        acks += await dht.announce(
                            ih, self.session.port, timeout=DHT_LOOKUP_TIMEOUT, on_peers=on_peers
                        )
                    log.info("%s: DHT announce taken by %d nodes", name, acks)
                    if acks:
                        next_announce = loop.time() + DHT_ANNOUNCE_INTERVAL
                        announce_misses = 0
                    else:
                        next_announce = loop.time() + self._retry(announce_misses)
                        announce_misses += 1
                    acted = True
            except (SwarmError, OSError) as exc:
                log.info("%s: DHT: %s", name, exc)
                await asyncio.sleep(30.0)
                continue
            if not acted:
                wake = next_announce
                if self._wants_peers(torrent):
                    wake = min(wake, next_lookup)
                await asyncio.sleep(min(max(wake - now, 0.5), 30.0))

    @staticmethod
    def _retry(misses: int) -> float:
        return DHT_RETRY_DELAYS[min(misses, len(DHT_RETRY_DELAYS) - 1)]

    # ------------------------------------------------------------ LSD

    async def _lsd_loop(self) -> None:
        while True:
            await asyncio.sleep(LSD_INTERVAL)
            if self.lsd is None:
                return
            hashes = [ih for t in self.session.torrents.values() if not t.meta.private for ih in t.meta.swarm_hashes]
            if hashes:
                with contextlib.suppress(OSError, RuntimeError):
                    self.lsd.announce(hashes)

    def _on_lsd_peer(self, info_hash: bytes, ip: str, port: int) -> None:
        torrent = self.session.route(info_hash)  # a hybrid's v2 hash too
        if torrent is None:
            return
        self._found(torrent, ip, port, "lsd")


class PexManager:
    """ut_pex (BEP 11) for one torrent: what we were told and what we tell."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self._send: dict[PeerConnection, PexState] = {}
        self._budget: dict[PeerConnection, tuple[float, int]] = {}  # window start, taken
        # per source IP across reconnects: the per-connection budget resets on reconnect
        self._sources = SourceBudget()
        self.received = 0
        self.accepted = 0

    @property
    def enabled(self) -> bool:
        return not self.torrent.meta.private

    def peer_closed(self, peer: PeerConnection) -> None:
        self._send.pop(peer, None)
        self._budget.pop(peer, None)

    def on_message(self, peer: PeerConnection, payload: bytes) -> None:
        """A ut_pex message from ``peer``; hostile input raises ProtocolError."""
        if not self.enabled:
            return
        msg = decode_pex(payload)
        self.received += 1
        session = self.torrent.session
        loopback_only = is_loopback(session.host)
        sender_local = _is_local_ip(peer.address[0])
        now = time.monotonic()
        start, taken = self._budget.get(peer, (now, 0))
        if now - start >= 60.0:
            start, taken = now, 0
        per_msg = 0
        source_left = self._sources.left(peer.address[0], now)
        for p in msg.added:
            if per_msg >= min(PEX_MAX_PER_MESSAGE, source_left) or taken >= PEX_MAX_PER_MINUTE:
                break
            if not peer_address_ok(
                p.ip, p.port, loopback_only=loopback_only, sender_local=sender_local
            ):
                continue
            addr = (p.ip, p.port)
            if addr == peer.address or addr in session.self_addresses:
                continue
            if p.port == session.port and (p.ip == session.host or _is_local_ip(p.ip)):
                continue  # ourselves
            if self.torrent.is_known(addr):
                continue
            per_msg += 1
            taken += 1
            self.accepted += 1
            self.torrent.add_peer(p.ip, p.port, "pex")
        self._budget[peer] = (start, taken)
        if per_msg:
            self._sources.spend(peer.address[0], now, per_msg)

    def _advertised(self) -> list[tuple[PeerConnection, PexPeer]]:
        out = []
        for p in self.torrent.peers:
            if p.closed:
                continue
            if p.outgoing:
                host, port, flags = p.address[0], p.address[1], PEX_REACHABLE
            elif p.listen_port:
                host, port, flags = p.address[0], p.listen_port, 0
            else:
                continue  # incoming and no listen port known: nobody could reach it
            if p.have is not None and p.have.all():
                flags |= PEX_SEED
            out.append((p, PexPeer(host, port, flags)))
        return out

    def greet(self, peer: PeerConnection) -> None:
        """After a peer's extended handshake: a round now rather than at the next tick, so
        that it hears of the others, and peers not told anything yet hear of it, at once
        (each connection's once-a-minute limit still holds)."""
        if self.enabled and ("ut_pex" in peer.ext_ids or peer.listen_port or peer.outgoing):
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """Send ut_pex to each peer that supports it, at most once a minute each."""
        if not self.enabled:
            return
        targets = []
        for p in self.torrent.peers:
            if p.closed or "ut_pex" not in p.ext_ids:
                continue
            state = self._send.get(p)
            if state is None:
                state = self._send[p] = PexState(PEX_INTERVAL)
            if state.due(now):
                targets.append((p, state))
        if not targets:
            return
        advertised = self._advertised()
        for p, state in targets:
            self._send_to(p, state, advertised, now)

    @staticmethod
    def _send_to(
        peer: PeerConnection,
        state: PexState,
        advertised: list[tuple[PeerConnection, PexPeer]],
        now: float,
    ) -> None:
        msg = state.make((pp for q, pp in advertised if q is not peer), now)
        if msg is not None:
            peer.send(wire.encode_extended(peer.ext_ids["ut_pex"], encode_pex(msg)))
