"""One seed and three leechers that also trade with each other (127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


async def test_one_seed_three_leechers_share(tmp_path: Path) -> None:
    payload = os.urandom(6 * 1024 * 1024)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=32768)
    meta = parse_metainfo(data)
    sessions = [Session("127.0.0.1", 0) for _ in range(4)]
    for s in sessions:
        await s.start()
    try:
        seed = await sessions[0].add_torrent(data, src, seed_only=True)
        leeches = []
        outs = []
        for i, s in enumerate(sessions[1:], 1):
            out = tmp_path / f"out{i}"
            out.mkdir()
            outs.append(out)
            # every leecher knows the others; only the seed comes last
            others = [("127.0.0.1", o.port or 0) for o in sessions[1:i]]
            leeches.append(await s.add_torrent(meta, out, peers=others))
        for h in leeches:
            h.add_peer("127.0.0.1", sessions[0].port or 0)
        await asyncio.wait_for(asyncio.gather(*(h.wait_complete() for h in leeches)), 60)
        ups = [h.status().uploaded for h in leeches]
        print("leecher uploads", ups)
        assert sum(ups) > 0, ups  # leechers served each other
        assert seed.status().uploaded >= meta.total_length
    finally:
        for s in sessions:
            await s.close()
    for out in outs:
        assert (out / "f.bin").read_bytes() == payload


async def test_peers_found_through_the_tracker(tmp_path: Path) -> None:
    from tracker.server import start_tracker

    tr = await start_tracker("127.0.0.1", 0, interval=60)
    payload = os.urandom(500_000)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", trackers=[tr.url], piece_length=16384)
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, src, seed_only=True)
            # the seed must be in the tracker before the leecher asks
            seed_t = seed_s.torrents[parse_metainfo(data).info_hash]
            deadline = asyncio.get_running_loop().time() + 10
            while not any(t.state == "ok" for t in seed_t.status().trackers):
                assert asyncio.get_running_loop().time() < deadline, seed_t.status().trackers
                await asyncio.sleep(0.02)
            leech = await get_s.add_torrent(data, out)
            await leech.wait_complete(timeout=30)
            assert leech.status().trackers[0].last_announce is not None
    finally:
        await tr.close()
    assert (out / "f.bin").read_bytes() == payload


async def test_peers_learn_each_other_by_pex(tmp_path: Path) -> None:
    """A and B only know the seed; the seed's ut_pex introduces them."""
    payload = os.urandom(300_000)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=16384)
    sessions = [Session("127.0.0.1", 0) for _ in range(3)]
    for s in sessions:
        await s.start()
    try:
        await sessions[0].add_torrent(data, src, seed_only=True)
        seed_addr = ("127.0.0.1", sessions[0].port or 0)
        handles = []
        for i in (1, 2):
            out = tmp_path / f"out{i}"
            out.mkdir()
            # seed_only: they stay incomplete and connected (no "both seeds" hang-up)
            handles.append(await sessions[i].add_torrent(data, out, seed_only=True, peers=[seed_addr]))
        # each ends up with two peers: the seed and the other one, found by PEX
        deadline = asyncio.get_running_loop().time() + 15
        while not all(len(h.status().peers) == 2 for h in handles):
            assert asyncio.get_running_loop().time() < deadline, [h.status().peers for h in handles]
            await asyncio.sleep(0.05)
        for h in handles:
            assert all(p.address.startswith("127.0.0.1:") for p in h.status().peers)
    finally:
        for s in sessions:
            await s.close()
