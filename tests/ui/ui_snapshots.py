"""Fixed snapshots and a fake clock for the UI tests (imported by name: tests/ui is on sys.path)."""

from __future__ import annotations

from typing import Any

from swarm.status import PeerStatus, TorrentStatus, TrackerStatus

MiB = 1024 * 1024
HASH = "0123456789abcdef0123456789abcdef01234567"
NOW = 1_764_072_000.0


def peer(i: int, down: float = 0.0, up: float = 0.0, **kw: Any) -> PeerStatus:
    base: dict[str, Any] = dict(
        address=f"127.0.0.{i}:{6881 + i}",
        client="libtorrent 2.1.1",
        am_choking=True,
        am_interested=True,
        peer_choking=False,
        peer_interested=False,
        snubbed=False,
        down_rate=down,
        up_rate=up,
        downloaded=0,
        uploaded=0,
        progress=0.5,
    )
    base.update(kw)
    return PeerStatus(**base)


def status(**kw: Any) -> TorrentStatus:
    """The snapshot behind the plain-mode example line of the brief."""
    base: dict[str, Any] = dict(
        info_hash=HASH,
        name="debian.iso",
        state="downloading",
        total_size=int(265.0 * MiB),
        verified=int(120.3 * MiB),
        num_pieces=1060,
        piece_length=262144,
        down_rate=50.1 * MiB,
        up_rate=2.0 * MiB,
        downloaded=int(121 * MiB),
        uploaded=2 * MiB,
        peers=(peer(1, 10 * MiB), peer(2, 20 * MiB), peer(3, 0.1 * MiB), peer(4, 20 * MiB, progress=1.0)),
        seeds=1,
        eta=3.2,
        started_at=NOW - 10,
    )
    base.update(kw)
    return TorrentStatus(**base)


def tracker(url: str = "http://127.0.0.1:6969/announce", **kw: Any) -> TrackerStatus:
    base: dict[str, Any] = dict(
        url=url, state="ok", last_announce=NOW - 5, next_announce=NOW + 1795, last_error=None, peers=12
    )
    base.update(kw)
    return TrackerStatus(**base)


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt
