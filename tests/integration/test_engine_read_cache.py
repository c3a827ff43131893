"""Uploads use one piece cache, Storage's (verified on load): each piece is read
from disk once and its blocks are served from that cache; a bad request range
is the peer's protocol error, never a lost piece."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from swarm import Session
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from swarm.errors import ProtocolError


def four_block_pieces(tmp_path: Path, size: int) -> tuple[bytes, Path, Path, bytes, Metainfo]:
    """A file of ``size`` random bytes in ``src/``, its torrent (4 blocks a piece), ``out/``."""
    payload = os.urandom(size)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=65536)
    return payload, src, out, data, parse_metainfo(data)


async def test_one_read_cache_for_uploads(tmp_path: Path) -> None:
    payload, src, out, data, meta = four_block_pieces(tmp_path, 40 * 65536 + 1234)
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, src, seed_only=True)
        t = seed._t
        assert t.storage.caches_pieces
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        st = t.storage
        assert st.cache_misses == meta.num_pieces  # one disk read per piece
        assert st.cache_hits >= 3 * (meta.num_pieces - 1)  # the other blocks: Storage's cache
        block = await t.read_block(3, 16384, 16384)
        assert bytes(block) == payload[3 * 65536 + 16384 : 3 * 65536 + 32768]
        for index, begin, length in ((3, 65536 - 10, 100), (3, -1, 10), (meta.num_pieces, 0, 16)):
            with pytest.raises(ProtocolError):
                await t.read_block(index, begin, length)
        assert t.have.all() and t.uploader.lost_pieces == 0
    assert (out / "f.bin").read_bytes() == payload


async def test_cached_blocks_are_served_without_awaiting_the_read_chain(tmp_path: Path) -> None:
    """Issue 17 (seed CPU per block): a block of a cached piece comes from
    ``Torrent.block_now``; the awaited ``read_block`` chain runs once per piece
    (the load), not once per block. Bad ranges still go the checked way."""
    payload, src, out, data, meta = four_block_pieces(tmp_path, 24 * 65536 + 999)
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, src, seed_only=True)
        t = seed._t
        awaited = 0
        real_read = t.read_block

        async def counting_read(index: int, begin: int, length: int, *spread: Any) -> memoryview:
            nonlocal awaited
            awaited += 1
            return await real_read(index, begin, length, *spread)

        t.read_block = counting_read  # type: ignore[method-assign]
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        blocks = -(-len(payload) // 16384)
        assert awaited <= meta.num_pieces + 4  # the loads (and a few blocks queued behind one)
        assert t.uploader.uploaded >= len(payload) and blocks > 2 * meta.num_pieces
        assert t.block_now(3, 65536 - 10, 100) is None  # read_block raises for it
        assert bytes(t.block_now(3, 16384, 16384) or b"") == payload[3 * 65536 + 16384 : 3 * 65536 + 32768]
    assert (out / "f.bin").read_bytes() == payload
