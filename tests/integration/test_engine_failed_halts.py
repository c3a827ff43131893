"""A torrent that failed (disk trouble) stops everything, not only its peers.

Before the fix ``_fail`` only closed the connected peers: the tick loop kept
running, new addresses were still dialled and incoming peers still admitted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import swarm.torrent as torrent_mod
from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.errors import StorageError
from swarm.storage import Storage
from tests.helpers.wait import poll
from tests.helpers_qa.peers import RawPeer, ScriptedSeed, data_server
from tests.helpers_qa.torrents import craft


async def test_failed_torrent_stops_ticking_dialling_and_admitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torrent_mod, "TICK", 0.05)

    def disk_full(storage: Storage, index: int, mv: memoryview) -> bool:
        raise StorageError("disk full writing the test file")

    monkeypatch.setattr(Storage, "_write_job", disk_full)
    torrent, payload = craft("fail.bin", length=100_000, piece_length=16384)
    meta = parse_metainfo(torrent)
    seed = ScriptedSeed(meta, data_server(meta, payload))
    other = ScriptedSeed(meta, data_server(meta, payload))
    async with seed, other, Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, peers=[("127.0.0.1", seed.port)])
        with pytest.raises(StorageError, match="disk full"):
            await h.wait_complete(timeout=20)
        t = h._t
        assert t.state == "error"
        ticks: list[float] = []
        monkeypatch.setattr(t, "_tick", ticks.append)
        t.add_peer("127.0.0.1", other.port, "tracker")
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            await p.handshake(meta.info_hash)
            assert await p.closed_within(3), "a failed torrent admitted a new peer"
        finally:
            p.close()
        assert not await poll(lambda: bool(ticks) or other.connections > 0, 0.5), (
            f"after the failure: {len(ticks)} ticks, {other.connections} new connections"
        )
