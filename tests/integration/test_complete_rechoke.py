"""A leecher that completes and goes on seeding chokes by the seed rules at once (issue 17)."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from pathlib import Path

from swarm import Session
from swarm.core.choker import PeerInfo
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


async def test_completion_rechokes_with_the_seed_rules(tmp_path: Path) -> None:
    payload = os.urandom(256 * 1024)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=32768)
    meta = parse_metainfo(data)
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        await seed_s.add_torrent(data, src, seed_only=True)
        h = await get_s.add_torrent(meta, out)
        choker = get_s.torrents[meta.info_hash].choking.choker
        calls: list[bool] = []
        rechoke = choker.rechoke

        def recording(peers: Sequence[PeerInfo], now: float, seeding: bool) -> set[Hashable]:
            calls.append(seeding)
            return rechoke(peers, now, seeding)

        choker.rechoke = recording  # type: ignore[method-assign]
        h.add_peer("127.0.0.1", seed_s.port or 0)
        await h.wait_complete(timeout=30)
        # by the time completion is announced, the seed rules have been applied
        assert calls and calls[-1] is True, calls
    assert (out / "f.bin").read_bytes() == payload
