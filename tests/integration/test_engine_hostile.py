"""A peer that sends corrupt blocks is banned; the download completes from a good seed."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from test_engine_fakepeer import FakeSeed, garbage_server

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


async def test_corrupt_peer_is_banned_and_download_completes(tmp_path: Path) -> None:
    payload = os.urandom(1_000_000)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=32768)
    meta = parse_metainfo(data)
    liar = FakeSeed(meta, garbage_server(meta))
    liar_port = await liar.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, src, seed_only=True)
            leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", liar_port)])
            # let the liar alone feed us first, then the good seed joins
            deadline = time.monotonic() + 10
            while liar.blocks_served < 4 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert liar.blocks_served >= 4
            leech.add_peer("127.0.0.1", seed_s.port or 0)
            await leech.wait_complete(timeout=30)
            st = leech.status()
            assert st.extra["hash_failures"] >= 1
            assert st.extra["banned"] >= 1
            assert all(p.address != f"127.0.0.1:{liar_port}" for p in st.peers)
    finally:
        await liar.close()
    assert (out / "f.bin").read_bytes() == payload
