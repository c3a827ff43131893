"""The connection pool: which peers we know, dial, accept, evict and ban.

Owns: the connected peers (``peers``, ``peer_ids``), the dials in progress
(``connecting``), the addresses waiting to be dialled (``candidates``), every
address heard of (``known``), the addresses the user named (``manual``,
retried while absent), recent dial errors (for the stall view), hash-failure
``strikes`` and the ``banned`` keys. Which peer to drop at the cap is decided
by ``swarm.core.eviction``; the rest of the torrent learns of arrivals and
departures through ``Torrent.peer_ready`` / ``Torrent.peer_closed``.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from swarm.core import admission
from swarm.core.eviction import NEWCOMER_GRACE, PeerUse, choose_eviction
from swarm.peer import PeerConnection

if TYPE_CHECKING:
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

MAX_PEERS = 60
#: Peers named by the user (--peer) may exceed the cap by this many.
MANUAL_EXTRA = 10
MAX_CONNECTING = 12
MANUAL_RETRY = 10.0
#: Hash-failure strikes: a sole contributor earns 2, a shared one 1; ban at 3.
BAN_STRIKES = 3


def _is_local(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_loopback


def connect_error(exc: BaseException) -> str:
    """A short, countable description: "connection refused", "timeout"."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc) or type(exc).__name__


class ConnectionPool:
    """Dialing, admission, eviction and bans for one torrent."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.peers: dict[PeerConnection, None] = {}
        self.peer_ids: set[bytes] = set()
        self.connecting: set[tuple[str, int]] = set()
        self.candidates: deque[tuple[str, int, str]] = deque()
        self.known: set[tuple[str, int]] = set()
        #: bound of known and candidates: what peers tell us must not grow without end
        self.max_known = admission.MAX_KNOWN_ADDRESSES
        # slot squatting (issue 16 #3): connections per IP, and how long a connected
        # interested peer may use nothing before its slot goes to another
        self.max_peers_per_ip: int = torrent.session.max_peers_per_ip
        self.idle_connection_after = admission.IDLE_CONNECTION_AFTER
        self.newcomer_grace = NEWCOMER_GRACE  # a new peer is not replaced for this long
        self.manual: set[tuple[str, int]] = set()  # --peer addresses: retried while absent
        self.last_retry = time.monotonic()
        self.last_forget = 0.0  # see _forget_stale
        self.banned: set[Any] = set()
        self.hash_fail_bans = 0  # peers banned by ``strike`` this session
        #: Payload bytes of the peers that left, by source: ``[down, up]`` (``bytes_by_source``).
        self.departed_bytes: dict[str, list[int]] = {}
        self.strikes: dict[Any, int] = {}
        self.connect_errors: deque[str] = deque(maxlen=32)

    # ------------------------------------------------------------ dialing

    def add_peer(self, host: str, port: int, source: str = "manual") -> None:
        if self.torrent.stopped or not 0 < port < 65536:
            return
        addr = (host, port)
        if addr in self.known and source != "manual":
            return
        if source != "manual" and len(self.known) >= self.max_known and not self._forget_stale():
            return  # full: addresses are forgotten when a dial fails (see _connect)
        self.known.add(addr)
        if source == "manual":
            self.manual.add(addr)
        if addr in self.banned or addr in self.torrent.session.self_addresses:
            return
        self.candidates.append((host, port, source))
        self.connect_more()

    def _forget_stale(self) -> bool:
        """The dial list is full: forget addresses of peers that have left (neither
        connected, being dialled, queued nor named by the user), at most once a
        minute so that a full list costs nothing per address offered. True if
        room was made."""
        now = time.monotonic()
        if now - self.last_forget < 60.0:
            return False
        self.last_forget = now
        live = {p.address for p in self.peers} | self.connecting | self.manual
        live.update((h, p) for h, p, _ in self.candidates)
        self.known &= live
        return len(self.known) < self.max_known

    def connect_more(self) -> None:
        t = self.torrent
        if t.picker is None or t.stopped:
            return
        while (
            self.candidates
            and len(self.connecting) < MAX_CONNECTING
            and len(self.peers) + len(self.connecting) < MAX_PEERS + MANUAL_EXTRA
        ):
            host, port, source = self.candidates[0]
            if source != "manual" and len(self.peers) + len(self.connecting) >= MAX_PEERS:
                break
            self.candidates.popleft()
            addr = (host, port)
            if addr in self.connecting or any(p.address == addr for p in self.peers):
                continue
            # discovery hook: a seed still dials LSD peers (a LAN peer announcing the torrent
            # wants it now; otherwise it waits for our next announce, minutes away)
            if t.seed_only and t.state == "seeding" and source not in ("manual", "lsd"):
                continue
            self.connecting.add(addr)
            t.spawn(self._connect(host, port, source))

    async def _connect(self, host: str, port: int, source: str) -> None:
        t = self.torrent
        try:
            await t.session.open_connection(
                host, port, t.info_hash, lambda: PeerConnection(t.session, torrent=t, source=source, address=(host, port))
            )
        except (TimeoutError, OSError) as exc:
            log.info("cannot connect to %s:%d: %s", host, port, exc or "timeout")
            self.connect_errors.append(connect_error(exc))
            if source != "manual" and len(self.known) >= self.max_known:
                self.known.discard((host, port))  # full: room for an address that may work
        finally:
            self.connecting.discard((host, port))

    def learn(self, addr: tuple[str, int]) -> None:
        """An address we heard of without dialling it (an incoming peer's listen port)."""
        if len(self.known) < self.max_known:
            self.known.add(addr)

    def is_known(self, addr: tuple[str, int]) -> bool:
        return addr in self.known

    def retry_manual(self, now: float) -> None:
        """Queue again the --peer addresses we are not connected to (every MANUAL_RETRY s)."""
        if now - self.last_retry < MANUAL_RETRY:
            return
        self.last_retry = now
        connected = {p.address for p in self.peers}
        queued = {(h, p) for h, p, _ in self.candidates}
        for addr in self.manual - connected - queued - self.connecting:
            if addr not in self.banned:
                self.candidates.append((addr[0], addr[1], "manual"))

    # ------------------------------------------------------------ admission

    def ban_key(self, peer: PeerConnection) -> Any:
        ip = peer.address[0]
        # Several clients share an IP on loopback (tests, demos): ban the client, not the IP.
        return (ip, peer.peer_id) if _is_local(ip) else ip

    def admit(self, peer: PeerConnection) -> str | None:
        """Why we refuse this peer, or None to accept it."""
        if self.torrent.stopped or self.torrent.picker is None:
            return "torrent not running"
        if self.ban_key(peer) in self.banned or peer.address in self.banned:
            return "banned"
        if peer.peer_id in self.peer_ids and not self._replace_duplicate(peer):
            return "duplicate peer id"
        if not peer.outgoing and admission.ip_at_cap(
            (p.address[0] for p in self.peers), peer.address[0], self.max_peers_per_ip
        ):
            return "too many connections from this address"
        if len(self.peers) >= MAX_PEERS and not self._make_room(peer):
            return "too many peers"
        return None

    def _replace_duplicate(self, new: PeerConnection) -> bool:
        """Two connections to one peer (both dialled at once, e.g. after PEX): both ends
        must keep the same one, or each closes the other's and none survives. Keep
        the one dialled by the smaller peer id."""
        old = next((p for p in self.peers if p.peer_id == new.peer_id), None)
        if old is None:
            return True
        ours, theirs = self.torrent.session.peer_id, new.peer_id
        keep = min(ours, theirs)

        def dialler(p: PeerConnection) -> bytes:
            return ours if p.outgoing else theirs

        if dialler(new) != keep or dialler(old) == keep:
            return False
        old.close("duplicate connection")
        self.torrent.peer_closed(old)
        return True

    def _make_room(self, newcomer: PeerConnection) -> bool:
        """At the cap: drop the least useful peer, if one is bad enough (swarm.core.eviction):
        a pool full of connections that never ask must not refuse one that will."""
        now = time.monotonic()
        manual = newcomer.outgoing and newcomer.source == "manual"
        if manual and len(self.peers) < MAX_PEERS + MANUAL_EXTRA:
            return True
        picker = self.torrent.picker
        uses = [
            PeerUse(
                key=p,
                interested=p.peer_interested,
                downloaded=p.downloaded,
                has_what_we_want=p.have is not None and (picker is None or picker.is_interesting(p)),
                connected_at=p.connected_at,
                last_recv=p.last_recv,
                asked=p.asked,
                caught_idle=p.idle_until > 0,
                unchoked=not p.am_choking,
                announced=p.new_haves > 0,
                ip=p.address[0],
            )
            for p in self.peers
        ]
        worst = choose_eviction(uses, now, grace=self.newcomer_grace, newcomer_ip=newcomer.address[0])
        if worst is None:
            # a peer that says interested and never asks holds a slot for nothing
            worst = admission.idle_to_evict(self.torrent.choking.upload_uses(now), now, self.idle_connection_after)
        if not isinstance(worst, PeerConnection):
            return False
        worst.close("making room for a new peer")
        self.torrent.peer_closed(worst)
        return True

    def add(self, peer: PeerConnection) -> None:
        """A peer finished its handshake and was admitted."""
        self.peers[peer] = None
        self.peer_ids.add(peer.peer_id)
        if peer.outgoing:  # an incoming peer's source port is not where it listens
            self.known.add(peer.address)

    def remove(self, peer: PeerConnection) -> bool:
        """Forget a connected peer; False when it was not one of ours."""
        if peer not in self.peers:
            return False
        del self.peers[peer]
        self.peer_ids.discard(peer.peer_id)
        banked = self.departed_bytes.setdefault(peer.source, [0, 0])
        banked[0] += peer.downloaded
        banked[1] += peer.uploaded
        return True

    def bytes_by_source(self) -> dict[str, list[int]]:
        """Payload ``[down, up]`` by source this session: the departed peers' and the
        connected ones' (counted per block on the peer, summed here, off the hot path)."""
        out = {source: list(pair) for source, pair in self.departed_bytes.items()}
        for peer in self.peers:
            pair = out.setdefault(peer.source, [0, 0])
            pair[0] += peer.downloaded
            pair[1] += peer.uploaded
        return out

    # ------------------------------------------------------------ bans

    def strike(self, p: PeerConnection, weight: int) -> None:
        """Hash-failure strikes against ``p``'s ban key; at BAN_STRIKES it is banned and closed."""
        key = self.ban_key(p)
        strikes = self.strikes.get(key, 0) + weight
        self.strikes[key] = strikes
        if strikes >= BAN_STRIKES and key not in self.banned:
            self.hash_fail_bans += 1
            self.banned.add(key)
            self.banned.add(p.address)
            self.torrent.emit(
                "peer", action="banned", address=p.name(), reason="sent data that failed the hash check"
            )
            p.close(f"banned after {strikes} hash-failure strikes", warn=True)
