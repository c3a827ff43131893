"""Choking: whom we upload to. Glue between the peers and the pure ``swarm.core.choker``.

Owns: the ``Choker`` (its slots, optimistic unchoke and rechoke clock) and
the reclaiming of idle slots (issue 16 #3: an unchoked peer that requests
nothing gives its slot back and is passed over for ``idle_unchoke_after``;
decided by ``swarm.core.admission``, the per-peer marks kept on the
``PeerConnection``), and the rechoke at once when an unchoked peer shows
itself a client that never finishes while others want data (``on_request``). Each peer's ``am_choking`` flag is set only here; what a choke does to the peer's
queued requests is the upload side's (``Uploader.on_choked``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, cast

from swarm.core import admission, wire
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
        self.idle_unchoke_after = admission.IDLE_UNCHOKE_AFTER
        self.unused_unchoke_after = admission.UNUSED_UNCHOKE_AFTER
        self.waste_slack = admission.WASTE_SLACK
        self._look_again: asyncio.TimerHandle | None = None  # see _look_again_at

    def unchoked_count(self) -> int:
        return sum(1 for p in self.torrent.peers if not p.am_choking)

    def unchoke(self, peer: PeerConnection) -> None:
        if peer.am_choking:
            peer.am_choking = False
            peer.we_unchoked_at = time.monotonic()  # an unused unchoke is timed from here
            peer.send(wire.encode_unchoke())

    def choke(self, peer: PeerConnection) -> None:
        if not peer.am_choking:
            peer.am_choking = True
            peer.send(wire.encode_choke())
            self.torrent.uploader.on_choked(peer)

    def on_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = True
        idle = time.monotonic() < peer.idle_until  # caught squatting: no slot for a while
        # a client that never finishes waits for the round (it may have every slot then,
        # if nobody else wants one): else saying interested again won a slot each time
        if peer.am_choking and not idle and self.unchoked_count() < UPLOAD_SLOTS and not self.wasteful(peer):
            self.unchoke(peer)

    def on_not_interested(self, peer: PeerConnection, m: Any) -> None:
        peer.peer_interested = False

    def on_request(self, peer: PeerConnection) -> None:
        """A request may show an unchoked peer a client that never finishes (its first
        few scattered requests, or the slack): while a peer that progresses is interested
        it loses its slot now; a tick later it had taken 20-30 MiB on loopback. Looked at
        only when it turns wasteful: one served because nobody else wants anything costs
        no rechoke per request."""
        wasteful = self.wasteful(peer)
        shown = wasteful and not peer.seen_wasteful
        peer.seen_wasteful = wasteful
        if shown:
            now = time.monotonic()
            if self.choker.wasteful_holds_a_slot(self._infos(now)):
                self.rechoke(now)

    def tick(self, now: float) -> None:
        if self.choker.due(now) or self.choker.wasteful_holds_a_slot(self._infos(now)):
            self.rechoke(now)

    def upload_uses(self, now: float) -> list[admission.UploadUse]:
        """How each peer uses its slots, for the pure idle checks: a peer "uses" an
        unchoke while it has requests queued or we sent it data since the last look."""
        uses = []
        for p in self.torrent.peers:
            if p.upload_queue or p.uploaded != p.used_mark:
                p.used_mark = p.uploaded
                p.last_used = now
            if p.am_choking:
                p.we_unchoked_at = None
            elif p.we_unchoked_at is None:
                p.we_unchoked_at = now
            uses.append(
                admission.UploadUse(
                    p, p.peer_interested, p.we_unchoked_at, p.last_used, p.downloaded,
                    caught_idle=p.idle_until > 0, asked=p.asked, passed_over=now < p.idle_until,
                    wasteful=self.wasteful(p),
                )
            )
        return uses

    def wasteful(self, peer: PeerConnection) -> bool:
        """We sent ``peer`` far more than the pieces it announced (a client that never
        finishes), or it asks scattered blocks and has announced nothing (no client
        downloads that way: a flood's requester)."""
        meta = self.torrent.meta
        if meta is None:
            return False
        if peer.new_haves == 0 and peer.read_spread.scattered(meta.piece_length):
            return True
        return admission.takes_without_progress(
            peer.uploaded, peer.new_haves, meta.piece_length, self.waste_slack
        )

    def reclaim_idle_slots(self, now: float) -> None:
        """Unchoked peers that request nothing give their slot back (to a peer that is
        choked and interested) and are passed over for ``idle_unchoke_after``; sooner
        (``unused_unchoke_after``) when a peer that has asked for something waits."""
        uses = self.upload_uses(now)
        idle = admission.slots_to_reclaim(uses, now, self.idle_unchoke_after, self.unused_unchoke_after)
        self._look_again_at(admission.next_unused_check(uses, now, self.unused_unchoke_after), now)
        caught = [p for p in cast("set[PeerConnection]", idle) if now >= p.idle_until]
        if not caught:
            return  # nobody new: no extra rechoke (a peer kept unchoked anyway stays so)
        for p in caught:
            p.idle_until = now + self.idle_unchoke_after
        if any(p.am_choking and p.peer_interested and now >= p.idle_until for p in self.torrent.peers):
            self.rechoke(now)

    def _look_again_at(self, when: float | None, now: float) -> None:
        """An unchoke becomes "unused" between two ticks while a peer waits: look then."""
        if when is None or self._look_again is not None:
            return

        def look() -> None:
            self._look_again = None
            if not self.torrent.stopped:
                self.reclaim_idle_slots(time.monotonic())

        self._look_again = asyncio.get_running_loop().call_later(max(0.0, when - now), look)

    def _infos(self, now: float) -> list[PeerInfo]:
        """What the pure choker knows of each peer."""
        return [
            PeerInfo(
                key=p,
                interested=p.peer_interested and now >= p.idle_until,
                down_rate=p.down.rate(now),
                up_rate=p.up.rate(now),
                snubbed=p.snubbed,
                connected_at=p.connected_at,
                is_seed=p.have is not None and p.have.all(),
                asked=p.asked,
                wasteful=self.wasteful(p),
                unchoked=not p.am_choking,
            )
            for p in self.torrent.peers
            if not p.closed
        ]

    def rechoke(self, now: float) -> None:
        """Ask the pure choker whom to unchoke; send only the changes."""
        t = self.torrent
        keep = self.choker.rechoke(self._infos(now), now, t.state == "seeding")
        for p in list(t.peers):
            if p in keep:
                self.unchoke(p)
            else:
                self.choke(p)
