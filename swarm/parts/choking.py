"""Choking: whom we upload to. Glue between the peers and the pure ``swarm.core.choker``.

Owns: the ``Choker`` (its slots, optimistic unchoke and rechoke clock). Each
peer's ``am_choking`` flag is set only here; what a choke does to the peer's
queued requests is the upload side's (``Uploader.on_choked``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from swarm.core import wire
from swarm.core.choker import Choker, PeerInfo

if TYPE_CHECKING:
    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

UPLOAD_SLOTS = 4


class ChokeControl:
    """Sends choke/unchoke as the choker decides, and on interest when a slot is free."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.choker = Choker(slots=UPLOAD_SLOTS)

    def unchoked_count(self) -> int:
        return sum(1 for p in self.torrent.peers if not p.am_choking)

    def unchoke(self, peer: PeerConnection) -> None:
        if peer.am_choking:
            peer.am_choking = False
            peer.send(wire.encode_unchoke())

    def choke(self, peer: PeerConnection) -> None:
        if not peer.am_choking:
            peer.am_choking = True
            peer.send(wire.encode_choke())
            self.torrent.uploader.on_choked(peer)

    def on_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = True
        if peer.am_choking and self.unchoked_count() < UPLOAD_SLOTS:
            self.unchoke(peer)

    def on_not_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = False

    def tick(self, now: float) -> None:
        if self.choker.due(now):
            self.rechoke(now)

    def rechoke(self, now: float) -> None:
        """Ask the pure choker whom to unchoke; send only the changes."""
        t = self.torrent
        seeding = t.state == "seeding"
        infos = [
            PeerInfo(
                key=p,
                interested=p.peer_interested,
                down_rate=p.down.rate(now),
                up_rate=p.up.rate(now),
                snubbed=p.snubbed,
                connected_at=p.connected_at,
                is_seed=p.have is not None and p.have.all(),
            )
            for p in t.peers
            if not p.closed
        ]
        keep = self.choker.rechoke(infos, now, seeding)
        for p in list(t.peers):
            if p in keep:
                self.unchoke(p)
            else:
                self.choke(p)
