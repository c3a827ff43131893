"""Uploads to a BEP 6 (fast extension) peer survive choke/unchoke rounds.

Short transfers finish before the first rechoke; a real swarm with more
interested peers than upload slots chokes and unchokes each peer again and
again. Here the rechoke decision is forced (the choker is stubbed) so that
several rounds run in well under a second, through ChokeControl.rechoke as the
tick loop would call it.
"""

from __future__ import annotations

import time
from collections.abc import Hashable
from pathlib import Path

from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from tests.helpers.wait import until
from tests.helpers_qa.peers import RESERVED, RawPeer
from tests.helpers_qa.torrents import craft

PIECE = 16384
ROUNDS = 4


async def test_fast_peer_is_served_after_every_unchoke(tmp_path: Path) -> None:
    torrent, payload = craft("rounds.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "rounds.bin").write_bytes(payload)
    # pieces the seed may serve while choking us (BEP 6) would hide the bug
    fast = set(wire.allowed_fast_set("127.0.0.1", meta.info_hash, meta.num_pieces))
    pieces = [i for i in range(meta.num_pieces) if i not in fast][:ROUNDS]
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, seed_only=True)
        t = h._t
        keep: set[Hashable] = set()
        t.choking.choker.rechoke = lambda infos, now, seeding: set(keep)  # type: ignore[method-assign]
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None and hs.fast
            p.send(wire.encode_have_none() + wire.encode_interested())
            await p.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            conn = await until(lambda: next(iter(t.peers), None), 5, "the peer to be attached")
            for n, index in enumerate(pieces):
                p.send(wire.encode_request(index, 0, PIECE))
                got = await p.expect(meta, lambda m: isinstance(m, wire.Piece), 5)
                assert (got.index, got.begin) == (index, 0), f"round {n}"
                assert got.data == payload[index * PIECE : (index + 1) * PIECE]
                keep.clear()
                t.choking.rechoke(time.monotonic())
                await p.expect(meta, lambda m: isinstance(m, wire.Choke), 5)
                # while choked: a request is rejected, not queued (BEP 6)
                p.send(wire.encode_request(index, 0, PIECE))
                await p.expect(meta, lambda m: isinstance(m, wire.RejectRequest), 5)
                keep.add(conn)
                t.choking.rechoke(time.monotonic())
                await p.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            assert conn.uploaded == len(pieces) * PIECE
        finally:
            p.close()
