"""``--metrics PORT`` of ``seed`` and ``get``: a client's figures in the Prometheus text format.

Built only from the public API, ``TorrentHandle.status()`` snapshots
(``swarm.status``) and ``Session.dht_node_count()``, read when scraped, so a
scraper cannot slow the engine down. The session counters a snapshot carries
(bytes by source kind, hash failures, hash-fail bans, disk write time) are
kept by the engine's parts off the block path: bytes are summed per peer as
they always were and banked by source when a peer leaves
(``ConnectionPool.remove``), writes are timed in the disk thread
(``Storage.write_times``). prometheus-client renders the text (one registry
per server; its collector turns the snapshots into metric families at each
scrape).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from swarm.errors import SwarmError

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from swarm.session import Session, TorrentHandle
    from swarm.status import TorrentStatus

log = logging.getLogger("swarm.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _client_family(client: str) -> str:
    """A peer's client without its version ("libtorrent 2.1.1" -> "libtorrent"), so the
    label has a handful of values, not one per release."""
    return (client.split(" ", 1)[0] or "unknown")[:32]


class _Snapshots:
    """The prometheus-client collector: metric families from fresh snapshots."""

    def __init__(self, session: Session, handles: Callable[[], Sequence[TorrentHandle]]) -> None:
        self.session, self.handles = session, handles

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            SummaryMetricFamily,
        )

        def gauge(name: str, text: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=["info_hash", *labels])

        def counter(name: str, text: str) -> CounterMetricFamily:
            return CounterMetricFamily(name, text, labels=["info_hash"])

        info = gauge("swarm_torrent_info", "1 per torrent; its name and state", ["name", "state"])
        downloaded = counter("swarm_downloaded_bytes", "Payload bytes received this session")
        uploaded = counter("swarm_uploaded_bytes", "Payload bytes sent this session")
        rates = gauge("swarm_rate_bytes_per_second", "Smoothed payload rate", ["direction"])
        size = gauge("swarm_wanted_bytes", "Bytes of wanted data (all unless --files)")
        verified = gauge("swarm_verified_bytes", "Bytes of wanted data verified on disk")
        pieces = gauge("swarm_pieces", "Pieces in the torrent")
        piece_length = gauge("swarm_piece_length_bytes", "Piece length")
        peers = gauge("swarm_peers", "Connected peers by how they were found", ["source"])
        clients = gauge("swarm_peers_by_client", "Connected peers by client", ["client"])
        states = gauge(
            "swarm_peers_by_state", "Connected peers in each choke/interest state", ["state"]
        )
        seeds = gauge("swarm_connected_seeds", "Connected peers that have everything")
        peer_bytes = gauge(
            "swarm_connected_peer_bytes",
            "Payload bytes exchanged with the peers connected now, by source",
            ["source", "direction"],
        )
        trackers = gauge("swarm_trackers", "Trackers by state", ["state"])
        tracker_peers = gauge("swarm_tracker_peers", "Peers in each tracker's last answer", ["url"])
        stalled = gauge("swarm_stalled", "1 while nothing verifies, with the reason", ["reason"])
        eta = gauge("swarm_eta_seconds", "Estimated seconds to completion")
        payload = CounterMetricFamily(
            "swarm_payload_bytes",
            "Payload bytes this session by source kind and peer source, every peer's",
            labels=["info_hash", "kind", "source", "direction"],
        )
        failed = counter("swarm_hash_failed_pieces", "Pieces that failed their hash check")
        bans = counter("swarm_hash_fail_bans", "Peers banned for data that failed the hash check")
        writes = SummaryMetricFamily(
            "swarm_disk_write_seconds",
            "Time the disk writes of verified pieces took",
            labels=["info_hash"],
        )
        for handle in self.handles():
            st: TorrentStatus = handle.status()
            ih = st.info_hash
            info.add_metric([ih, st.name, st.state], 1)
            downloaded.add_metric([ih], st.downloaded)
            uploaded.add_metric([ih], st.uploaded)
            rates.add_metric([ih, "down"], st.down_rate)
            rates.add_metric([ih, "up"], st.up_rate)
            size.add_metric([ih], st.total_size)
            verified.add_metric([ih], st.verified)
            pieces.add_metric([ih], st.num_pieces)
            piece_length.add_metric([ih], st.piece_length)
            seeds.add_metric([ih], st.seeds)
            for source, n in sorted(Counter(p.source for p in st.peers).items()):
                peers.add_metric([ih, source], n)
            for client, n in sorted(Counter(_client_family(p.client) for p in st.peers).items()):
                clients.add_metric([ih, client], n)
            state_counts = Counter(
                state
                for p in st.peers
                for state, on in (
                    ("peer_choking", p.peer_choking),
                    ("peer_unchoked", not p.peer_choking),
                    ("am_choking", p.am_choking),
                    ("am_unchoked", not p.am_choking),
                    ("am_interested", p.am_interested),
                    ("peer_interested", p.peer_interested),
                    ("snubbed", p.snubbed),
                )
                if on
            )
            for state, n in sorted(state_counts.items()):
                states.add_metric([ih, state], n)
            down_by: Counter[str] = Counter()
            up_by: Counter[str] = Counter()
            for p in st.peers:
                down_by[p.source] += p.downloaded
                up_by[p.source] += p.uploaded
            for source in sorted(set(down_by) | set(up_by)):
                peer_bytes.add_metric([ih, source, "down"], down_by[source])
                peer_bytes.add_metric([ih, source, "up"], up_by[source])
            for state, n in sorted(Counter(t.state for t in st.trackers).items()):
                trackers.add_metric([ih, state], n)
            for t in st.trackers:
                tracker_peers.add_metric([ih, t.url], t.peers)
            if st.stalled_reason:
                stalled.add_metric([ih, st.stalled_reason], 1)
            if st.eta is not None:
                eta.add_metric([ih], st.eta)
            for kind, source, down, up in st.bytes_by_source:
                payload.add_metric([ih, kind, source, "down"], down)
                payload.add_metric([ih, kind, source, "up"], up)
            failed.add_metric([ih], st.hash_failures)
            bans.add_metric([ih], st.hash_fail_bans)
            writes.add_metric([ih], count_value=st.disk_writes, sum_value=st.disk_write_seconds)
        yield from (
            info, downloaded, uploaded, rates, size, verified, pieces, piece_length, peers,
            clients, states, seeds, peer_bytes, trackers, tracker_peers, stalled, eta,
            payload, failed, bans, writes,
        )  # fmt: skip
        nodes = self.session.dht_node_count()
        if nodes is not None:
            yield GaugeMetricFamily("swarm_dht_nodes", "Nodes in the DHT routing table", nodes)


class MetricsServer:
    """``GET /metrics`` on ``host:port``; ``handles`` names the torrents to report."""

    def __init__(self, session: Session, handles: Callable[[], Sequence[TorrentHandle]]) -> None:
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry()
        self.registry.register(_Snapshots(session, handles))
        self.runner: web.AppRunner | None = None
        self.port: int | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        from prometheus_client import generate_latest

        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE}
        )

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise SwarmError(
                f"--metrics {port}: cannot listen on {host}:{port}: {exc.strerror or exc}"
            ) from None
        self.runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("event=metrics_listening host=%s port=%d", host, self.port)

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None
