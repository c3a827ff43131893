"""Engine-level transfers through the public API, on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.trees import same_tree, seed_then_get


def make_tree(root: Path) -> Path:
    """A multi-file torrent whose pieces span files, with an empty file inside."""
    d = root / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(100_000))
    (d / "empty.txt").write_bytes(b"")
    (d / "sub" / "b.bin").write_bytes(os.urandom(300_001))
    (d / "sub" / "c.txt").write_bytes(b"hello\n" * 1000)
    return d


async def test_seed_to_get_multi_file(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    data = create_torrent(src, trackers=(), piece_length=32768)
    meta = parse_metainfo(data)
    assert meta.num_pieces > 10
    out = tmp_path / "out"
    seed_st, st = await seed_then_get(data, meta, tmp_path, out)
    assert st.state == "seeding"
    assert st.verified == st.total_size == meta.total_length
    assert seed_st.uploaded >= meta.total_length
    assert same_tree(src, out / "tree")
    assert (out / "tree" / "empty.txt").exists()


async def test_magnet_over_the_dht_only(tmp_path: Path) -> None:
    """No tracker, no x.pe: the leecher finds the seed and the metadata through the DHT."""
    from swarm.core.magnet import Magnet

    payload = os.urandom(200_000)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=16384)
    meta = parse_metainfo(data)
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0, enable_dht=True, dht_bootstrap=()) as get_s, Session(
        "127.0.0.1", 0, enable_dht=True, dht_bootstrap=[("127.0.0.1", get_s.port or 0)]
    ) as seed_s:
        seed = await seed_s.add_torrent(data, src, seed_only=True)
        assert seed.status().dht_nodes is not None
        # the seed's announce reaches the leecher's node once its DHT has bootstrapped
        deadline = asyncio.get_running_loop().time() + 20
        while not await get_s.dht.get_peers(meta.info_hash, timeout=2):
            assert asyncio.get_running_loop().time() < deadline, "seed never announced"
            await asyncio.sleep(0.1)
        leech = await get_s.add_torrent(Magnet(meta.info_hash), out)
        await leech.wait_complete(timeout=30)
    assert (out / "f.bin").read_bytes() == payload


async def test_only_selected_files(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    data = create_torrent(src, piece_length=16384)
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, tmp_path, seed_only=True)
        leech = await get_s.add_torrent(data, out, files=["sub/c.txt"], peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        st = leech.status()
        assert st.total_size < parse_metainfo(data).total_length
        assert st.verified == st.total_size
        assert seed.status().uploaded < parse_metainfo(data).total_length
    assert (out / "tree" / "sub" / "c.txt").read_bytes() == (src / "sub" / "c.txt").read_bytes()
    big = out / "tree" / "sub" / "b.bin"
    # b.bin was not asked for: at most the piece it shares with c.txt holds its real bytes
    assert not big.exists() or big.read_bytes() != (src / "sub" / "b.bin").read_bytes()
