"""The status view: what observers see of a torrent, and why it is stalled.

Owns: the stall clock and verdict (``stall_after``, ``stalled_reason``,
``last_progress``, the payload count last sampled). Reads every other part; changes none. The stall
reason is decided by the pure ``swarm.core.stall.diagnose``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from swarm.core.stall import DEFAULT_AFTER, StallFacts, TrackerFact, diagnose
from swarm.status import PeerStatus, TorrentStatus

if TYPE_CHECKING:
    from swarm.peer import PeerConnection
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")

#: Piece-map resolution: one cell per piece up to this many (the display rescales
#: and shades mixed cells; coarse cells would show any partly-missing range as missing).
STATUS_CELLS = 1000


def client_name(peer: PeerConnection) -> str:
    if peer.ext_client:
        return peer.ext_client
    try:
        from swarm.core.peerid import client_name as name_of

        return str(name_of(peer.peer_id))
    except Exception:  # noqa: BLE001 - a name is cosmetic
        return peer.peer_id[:8].decode("latin-1")


class StatusView:
    """``TorrentStatus`` snapshots and ``stalled`` events."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.stall_after = DEFAULT_AFTER
        self.stalled_reason: str | None = None
        self.last_progress = time.monotonic()
        self.stall_bytes = 0  # downloaded when last sampled

    def progress(self, now: float) -> None:
        """A piece verified: not stalled."""
        self.last_progress = now
        self.stalled_reason = None

    def status(self) -> TorrentStatus:
        t = self.torrent
        now = time.monotonic()
        m = t.meta
        pl = m.piece_length
        n = t.num_pieces
        if t.wanted.all():
            total = m.total_length
            verified = t.have.count * pl
            if n and t.have[n - 1]:
                verified -= pl - m.piece_size(n - 1)
        else:
            total = sum(m.piece_size(i) for i in t.wanted)
            verified = sum(m.piece_size(i) for i in t.wanted if t.have[i])
        verified = max(0, min(verified, total))
        down_rate = t.downloader.down.rate(now)
        up_rate = t.uploader.up.rate(now)
        peers = []
        seeds = 0
        for p in t.peers:
            have_n = p.have.count if p.have is not None else 0
            if p.have is not None and p.have.all():
                seeds += 1
            flags = ("d" if p.am_interested else "") + ("I" if p.peer_interested else "")
            flags += (" u" if not p.am_choking else "") + ("C" if p.peer_choking else "")
            peers.append(
                PeerStatus(
                    address=p.name(),
                    client=client_name(p),
                    am_choking=p.am_choking,
                    am_interested=p.am_interested,
                    peer_choking=p.peer_choking,
                    peer_interested=p.peer_interested,
                    snubbed=p.snubbed,
                    down_rate=p.down.rate(now),
                    up_rate=p.up.rate(now),
                    downloaded=p.downloaded,
                    uploaded=p.uploaded,
                    progress=have_n / n if n else 1.0,
                    source=p.source,
                    outgoing=p.outgoing,
                    flags=flags.strip(),
                    encryption=p.encryption,
                )
            )
        trackers: tuple[Any, ...] = ()
        if t.trackers.client is not None:
            with contextlib.suppress(Exception):
                trackers = tuple(t.trackers.client.status())
        eta = None
        if down_rate > 0 and total > verified:
            eta = (total - verified) / down_rate
        picker = t.picker
        cells = max(1, min(n, STATUS_CELLS))
        stalled = self.stalled_reason if t.state in ("downloading", "metadata") else None
        if stalled is None and t.state == "downloading" and not t.peers and not t.webseeds.seeds:
            stalled = "no peers" if not t.pool.connecting else "connecting"
        dht = t.session.dht
        dht_nodes = dht.node_count() if dht is not None else None
        writes = getattr(t.storage, "write_times", None)  # no storage yet while fetching metadata
        return TorrentStatus(
            info_hash=m.info_hash_hex,
            name=m.name,
            state=t.state,
            total_size=total,
            verified=verified,
            num_pieces=n,
            piece_length=pl,
            down_rate=down_rate,
            up_rate=up_rate,
            downloaded=t.downloaded,
            uploaded=t.uploaded,
            peers=tuple(peers),
            trackers=trackers,
            piece_map=picker.piece_map(cells) if picker is not None else "",
            availability=picker.availability_map(cells) if picker is not None else (),
            seeds=seeds,
            dht_nodes=dht_nodes,
            error=t.error,
            stalled_reason=stalled,
            eta=eta,
            started_at=t.started_at,
            hash_failures=t.completion.hash_failures,
            hash_fail_bans=t.pool.hash_fail_bans,
            disk_writes=writes.count if writes is not None else 0,
            disk_write_seconds=writes.seconds if writes is not None else 0.0,
            bytes_by_source=tuple(
                ("peer", source, down, up)
                for source, (down, up) in sorted(t.pool.bytes_by_source().items())
            ),
            extra={
                "wasted": t.downloader.wasted,
                "hash_failures": t.completion.hash_failures,
                "lost_pieces": t.uploader.lost_pieces,
                "banned": len(t.pool.banned),
                "check_progress": t.check_progress,
            },
            web_seeds=t.webseeds.status(now),
        )

    def check_stall(self, now: float) -> None:
        """Name why nothing verifies (swarm.core.stall); emit ``stalled`` when the reason changes.

        Payload arriving counts as progress too (a huge piece from a slow peer is
        not a stall); it is sampled here, once a tick, not on the block path.
        """
        t = self.torrent
        if t.downloaded != self.stall_bytes:
            self.stall_bytes = t.downloaded
            self.last_progress = now
        if t.state not in ("downloading", "metadata") or now - self.last_progress < self.stall_after:
            if self.stalled_reason is not None and t.state != "downloading":
                self.stalled_reason = None
            return
        reason = diagnose(self.stall_facts(), now)
        if reason != self.stalled_reason:
            self.stalled_reason = reason
            if reason is not None:
                log.info("%s: stalled: %s", t.meta.name, reason)
                t.emit("stalled", reason=reason)

    def stall_facts(self) -> StallFacts:
        t = self.torrent
        trackers: tuple[TrackerFact, ...] = ()
        if t.trackers.client is not None:
            with contextlib.suppress(Exception):
                trackers = tuple(
                    TrackerFact(tr.url, tr.state == "error", tr.last_error) for tr in t.trackers.client.status()
                )
        dht = getattr(t.session, "dht", None)
        dht_nodes: int | None = None
        if dht is not None:
            with contextlib.suppress(Exception):
                dht_nodes = int(dht.node_count())
        picker = t.picker
        useful = choking = 0
        for p in t.peers:
            if picker is not None and p.have is not None and picker.is_interesting(p):
                useful += 1
                if p.peer_choking and not p.allowed_fast:
                    choking += 1
        missing = unavailable = 0
        files: list[str] = []
        if picker is not None:
            have = t.have
            hole = bytearray(t.num_pieces)
            for i in t.wanted:
                if not have[i]:
                    missing += 1
                    if picker.availability(i) == 0:
                        unavailable += 1
                        hole[i] = 1
            if unavailable:
                pl = t.meta.piece_length
                for f in t.meta.files:
                    if f.pad or f.length == 0:
                        continue
                    first, last = f.offset // pl, (f.offset + f.length - 1) // pl
                    if any(hole[first : last + 1]):
                        files.append("/".join(f.path))
        pool = t.pool
        return StallFacts(
            state=t.state,
            last_progress=self.last_progress,
            after=self.stall_after,
            trackers=trackers,
            dht_enabled=dht is not None,
            dht_nodes=dht_nodes,
            known_peers=len(pool.known),
            connecting=len(pool.connecting),
            connected=len(pool.peers),
            connect_errors=tuple(pool.connect_errors),
            choking_us=choking,
            useful_peers=useful,
            missing_pieces=missing,
            unavailable_pieces=unavailable,
            unavailable_files=tuple(files),
            layers_missing=t.hashes.layers_missing,
        )
