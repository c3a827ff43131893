"""Uploads use one piece cache, Storage's (verified on load): each piece is read
from disk once and its blocks are served from that cache; a bad request range
is the peer's protocol error, never a lost piece."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from swarm.errors import ProtocolError


async def test_one_read_cache_for_uploads(tmp_path: Path) -> None:
    payload = os.urandom(40 * 65536 + 1234)
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=65536)  # 4 blocks a piece
    meta = parse_metainfo(data)
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
