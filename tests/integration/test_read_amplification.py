"""Issue 16 (1,000 connections): a seed loads and SHA-1-checks a whole piece into
its read cache to serve a block of it. A peer asking for one block of each of
many pieces made it read and hash 16x-64x what it sent (the flood's requesters
doubled the seed's CPU and slowed an honest leecher); such a peer is served the
block alone, while a peer asking for pieces block after block keeps the cache."""

from __future__ import annotations

import random
from pathlib import Path

from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from tests.helpers_qa.peers import RESERVED, RawPeer
from tests.helpers_qa.torrents import craft

BLOCK = 16384
PIECE = 16 * BLOCK


async def test_a_peer_asking_one_block_per_piece_does_not_make_the_seed_load_whole_pieces(
    tmp_path: Path,
) -> None:
    torrent, payload = craft("spread.bin", length=48 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "spread.bin").write_bytes(payload)
    pieces = random.Random(7).sample(range(meta.num_pieces), 40)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, seed_only=True)
        st = h._t.storage
        assert s.port is not None and st.caches_pieces
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None
            p.send(wire.encode_have_none() + wire.encode_interested())
            await p.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            misses = st.cache_misses  # allowed-fast pieces warmed at the greeting
            for i in pieces:
                p.send(wire.encode_request(i, 0, BLOCK))
                got = await p.expect(meta, lambda m: isinstance(m, (wire.Piece, wire.RejectRequest)), 5)
                assert isinstance(got, wire.Piece) and bytes(got.data) == payload[i * PIECE : i * PIECE + BLOCK]
            loads = st.cache_misses - misses
            assert loads <= 8, f"{loads} whole pieces loaded for {len(pieces)} single blocks"
            # and no client downloads that way, announcing nothing: it is served last
            (conn,) = h._t.peers
            assert h._t.choking.wasteful(conn)
        finally:
            p.close()
