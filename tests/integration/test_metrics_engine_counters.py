"""``--metrics`` exports the engine's session counters from the status snapshot: bytes by
source kind (every peer's, not only the connected ones'), hash failures, hash-fail bans
and disk write latency; parsed with prometheus-client's own parser."""

from __future__ import annotations

from typing import Any

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from swarm.metrics import MetricsServer
from swarm.status import TorrentStatus


class Handle:
    def __init__(self, st: TorrentStatus) -> None:
        self.st = st

    def status(self) -> TorrentStatus:
        return self.st


class Session:
    def dht_node_count(self) -> None:
        return None


def samples(st: TorrentStatus) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    server = MetricsServer(Session(), lambda: [Handle(st)])  # type: ignore[arg-type, list-item]
    text = generate_latest(server.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_engine_counters_are_exported() -> None:
    ih = "ab" * 20
    base: dict[str, Any] = dict(
        info_hash=ih, name="x", state="downloading", total_size=10, verified=0,
        num_pieces=1, piece_length=16384, down_rate=0.0, up_rate=0.0,
        downloaded=1500, uploaded=70,
    )  # fmt: skip
    st = TorrentStatus(
        **base,
        hash_failures=3,
        hash_fail_bans=1,
        disk_writes=4,
        disk_write_seconds=0.25,
        bytes_by_source=(("peer", "tracker", 1000, 70), ("peer", "pex", 500, 0)),
    )
    got = samples(st)
    key = ("info_hash", ih)
    assert got[("swarm_hash_failed_pieces_total", (key,))] == 3
    assert got[("swarm_hash_fail_bans_total", (key,))] == 1
    assert got[("swarm_disk_write_seconds_count", (key,))] == 4
    assert got[("swarm_disk_write_seconds_sum", (key,))] == 0.25

    def payload(source: str, direction: str) -> float:
        labels = (("direction", direction), key, ("kind", "peer"), ("source", source))
        return got[("swarm_payload_bytes_total", labels)]

    assert payload("tracker", "down") == 1000 and payload("tracker", "up") == 70
    assert payload("pex", "down") == 500 and payload("pex", "up") == 0
