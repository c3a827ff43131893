"""BEP 16 super-seeding (`swarm seed --super-seed`, issue 17): each first copy leaves once."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


async def test_super_seed_serves_about_one_copy(tmp_path: Path) -> None:
    payload = os.urandom(64 * 16384)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=16384)
    meta = parse_metainfo(data)
    sessions = [Session("127.0.0.1", 0) for _ in range(4)]
    for s in sessions:
        await s.start()
    try:
        seed = await sessions[0].add_torrent(data, src, seed_only=True, super_seed=True)
        seed_t = sessions[0].torrents[meta.info_hash]
        leeches, outs = [], []
        for i, s in enumerate(sessions[1:], 1):
            out = tmp_path / f"out{i}"
            out.mkdir()
            outs.append(out)
            others = [("127.0.0.1", o.port or 0) for o in sessions[1:i]]
            leeches.append(await s.add_torrent(meta, out, peers=others))
        for h in leeches:
            h.add_peer("127.0.0.1", sessions[0].port or 0)
        await asyncio.wait_for(asyncio.gather(*(h.wait_complete() for h in leeches)), 60)
        sent = seed.status().uploaded
        print("super-seed sent", sent / meta.total_length, "copies")
        # the seed claimed nothing (BEP 6 have-none) and showed pieces one by one
        assert all(p.have_sent == "have_none" for p in seed_t.peers)
        # one copy is the floor; a plain seed sends the pieces the leechers ask
        # for, the same ones to several of them
        assert meta.total_length <= sent <= 1.5 * meta.total_length
    finally:
        for s in sessions:
            await s.close()
    for out in outs:
        assert (out / "f.bin").read_bytes() == payload
