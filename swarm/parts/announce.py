"""Trackers for one torrent: start the client, feed it our stats, take its peers, report its results.

Owns: the tracker client (``client``; None without trackers) and the last
result reported per URL (so each finished announce becomes one ``tracker``
event). Announcing itself (tiers, intervals, HTTP/UDP) is ``swarm.trackers``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from swarm.errors import SwarmError

if TYPE_CHECKING:
    from swarm.torrent import Torrent

log = logging.getLogger("swarm.torrent")


class TrackerLink:
    """The torrent's side of its tracker client."""

    def __init__(self, torrent: Torrent) -> None:
        self.torrent = torrent
        self.client: Any = None
        self.marks: dict[str, tuple[Any, ...]] = {}

    def start(self) -> None:
        t = self.torrent
        tiers = [list(tier) for tier in t.meta.trackers if tier]
        if not tiers or t.session.port is None:
            return
        try:
            from swarm.trackers import TrackerClient
        except ImportError:
            log.warning("tracker client not available; use --peer")
            return
        self.client = TrackerClient(
            tiers,
            t.info_hash,
            t.session.peer_id,
            t.session.port,
            stats=self._stats,
            on_peers=self._on_peers,
            also_hashes=t.meta.swarm_hashes[1:],  # a hybrid's v2 hash (BEP 52)
            on_announced=t.wake,  # report() it: an idle torrent does not tick
        )
        t.spawn(self._run())

    async def _run(self) -> None:
        try:
            await self.client.run()
        except SwarmError as exc:
            log.warning("trackers: %s", exc)

    def _stats(self) -> tuple[int, int, int]:
        t = self.torrent
        return t.uploaded, t.downloaded, t.left()

    def _on_peers(self, peers: Iterable[Any]) -> None:
        for p in peers:
            host, port = (p[0], p[1]) if isinstance(p, tuple) else (p.host, p.port)
            self.torrent.add_peer(str(host), int(port), "tracker")

    def report(self) -> None:
        """A ``tracker`` event per finished announce, so logs and --json show tracker trouble."""
        if self.client is None:
            return
        try:
            statuses = self.client.status()
        except Exception:  # a viewer hook must never break the tick
            return
        for st in statuses:
            mark = (st.last_announce, st.last_error, st.state)
            if self.marks.get(st.url) == mark or st.state not in ("ok", "error"):
                continue
            self.marks[st.url] = mark
            if st.state == "ok":
                self.torrent.emit(
                    "tracker", action="ok", url=st.url, peers=st.peers,
                    seeders=st.seeders, leechers=st.leechers,
                )
            else:
                self.torrent.emit("tracker", action="error", url=st.url, error=st.last_error or "failed")
