"""HAVE reaches every peer, so the swarm learns who is complete (issue 17).

A peer that already has a piece must still hear our HAVE for it: otherwise it
can never tell that we finished, and trackers' and peers' "seeds" stay 0 for
leechers that completed and go on seeding.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from swarm import Session
from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import create_torrent
from tests.helpers.peer_server import LocalPeerServer


class HalfPeer(LocalPeerServer):
    """Claims the first half of the pieces, never unchokes, records the HAVEs it hears."""

    def __init__(self, meta: Metainfo) -> None:
        super().__init__()
        self.meta = meta
        self.claimed = Bitfield(meta.num_pieces)
        for i in range(meta.num_pieces // 2):
            self.claimed.set(i)
        self.heard: set[int] = set()
        self.all_heard = asyncio.Event()
        self.greeted = asyncio.Event()  # the leecher's handshake arrived

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        m = self.meta
        try:
            hs = wire.parse_handshake(await reader.readexactly(68))
            if hs.info_hash != m.info_hash:
                return
            writer.write(wire.Handshake(m.info_hash, b"-HP0001-" + os.urandom(6).hex().encode(), bytes(8)).encode())
            writer.write(wire.encode_bitfield(self.claimed.to_bytes()))
            self.greeted.set()
            dec = wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length)
            while data := await reader.read(65536):
                for msg in dec.feed(data):
                    if isinstance(msg, wire.Have):
                        self.heard.add(msg.index)
                if len(self.heard) == m.num_pieces:
                    self.all_heard.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            return


def _torrent(tmp_path: Path, size: int) -> tuple[bytes, bytes, Path]:
    payload = os.urandom(size)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    return payload, create_torrent(src / "f.bin", piece_length=32768), src


async def test_have_goes_to_peers_that_have_the_piece(tmp_path: Path) -> None:
    payload, data, src = _torrent(tmp_path, 640 * 1024)
    meta = parse_metainfo(data)
    half = HalfPeer(meta)
    hport = await half.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, src, seed_only=True)
            h = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", hport)])
            # connected before the first piece can complete: pieces had before are in
            # our bitfield, not in HAVEs (with MSE tried first, this plain peer took
            # longer to connect than a fast download of 20 pieces from the seed)
            await asyncio.wait_for(half.greeted.wait(), 10)
            h.add_peer("127.0.0.1", seed_s.port or 0)
            await h.wait_complete(timeout=30)
            await asyncio.wait_for(half.all_heard.wait(), 10)
    finally:
        await half.close()
    assert half.heard == set(range(meta.num_pieces))  # the half it had too
    assert (out / "f.bin").read_bytes() == payload


async def test_a_leecher_sees_a_finished_leecher_as_a_seed(tmp_path: Path) -> None:
    """B holds (and wants) only the first file; A fetches everything from the seed
    while connected to B: once A is done, B counts it as a seed (seeds: 1 in --json)."""
    src = tmp_path / "src" / "d"
    src.mkdir(parents=True)
    one, two = os.urandom(320 * 1024), os.urandom(320 * 1024)
    (src / "one.bin").write_bytes(one)
    (src / "two.bin").write_bytes(two)
    data = create_torrent(src, piece_length=32768)
    meta = parse_metainfo(data)
    out_a, out_b = tmp_path / "a", tmp_path / "b"
    (out_b / "d").mkdir(parents=True)
    out_a.mkdir()
    (out_b / "d" / "one.bin").write_bytes(one)
    async with (
        Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as a_s, Session("127.0.0.1", 0) as b_s
    ):
        await seed_s.add_torrent(data, src.parent, seed_only=True)
        b = await b_s.add_torrent(meta, out_b, files=["one.bin"])
        a = await a_s.add_torrent(meta, out_a, peers=[("127.0.0.1", b_s.port or 0)])
        assert b.status().seeds == 0
        a.add_peer("127.0.0.1", seed_s.port or 0)
        await a.wait_complete(timeout=30)
        deadline = asyncio.get_running_loop().time() + 10
        # every peer B knows has everything: A (heard through HAVEs) and the seed if
        # ut_pex introduced it
        while not (st := b.status()).peers or st.seeds != len(st.peers):
            assert asyncio.get_running_loop().time() < deadline, st.peers
            await asyncio.sleep(0.02)
    assert (out_a / "d" / "two.bin").read_bytes() == two
