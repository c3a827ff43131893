"""A tiny scripted peer for engine tests: speaks the wire protocol via swarm.core.wire.

It seeds whatever ``serve(index, begin, length)`` returns (real data, garbage,
or real data slowly), so tests can play a hostile or a slow peer. The module
also tests the helper itself against the engine's handshake.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import Metainfo
from tests.helpers.peer_server import LocalPeerServer

Serve = Callable[[int, int, int], bytes]


def file_server(meta: Metainfo, data: bytes) -> Serve:
    def serve(index: int, begin: int, length: int) -> bytes:
        off = index * meta.piece_length + begin
        return data[off : off + length]

    return serve


def garbage_server(meta: Metainfo) -> Serve:
    def serve(index: int, begin: int, length: int) -> bytes:
        return hashlib.sha256(f"{index}:{begin}".encode()).digest() * (length // 32) + b"x" * (length % 32)

    return serve


class FakeSeed(LocalPeerServer):
    """Listens on 127.0.0.1; claims every piece; answers requests with ``serve``."""

    def __init__(self, meta: Metainfo, serve: Serve, *, delay: float = 0.0) -> None:
        super().__init__()
        self.meta = meta
        self.serve = serve
        self.delay = delay
        self.peer_id = b"-FK0001-" + os.urandom(6).hex().encode()
        self.blocks_served = 0
        self.dropped_by_remote = 0

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        m = self.meta
        try:
            hs = wire.parse_handshake(await reader.readexactly(68))
            if hs.info_hash != m.info_hash:
                return
            writer.write(wire.Handshake(m.info_hash, self.peer_id, bytes(8)).encode())
            writer.write(wire.encode_bitfield(Bitfield(m.num_pieces, full=True).to_bytes()))
            writer.write(wire.encode_unchoke())
            dec = wire.MessageDecoder(m.num_pieces, m.piece_length, m.total_length)
            while True:
                data = await reader.read(65536)
                if not data:
                    self.dropped_by_remote += 1
                    return
                for msg in dec.feed(data):
                    if isinstance(msg, wire.Request):
                        if self.delay:
                            await asyncio.sleep(self.delay)
                        block = self.serve(msg.index, msg.begin, msg.length)
                        writer.write(wire.encode_piece(msg.index, msg.begin, block))
                        self.blocks_served += 1
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.dropped_by_remote += 1


async def test_fake_seed_serves_the_engine(tmp_path: Path) -> None:
    from swarm import Session
    from swarm.core.metainfo import parse_metainfo
    from swarm.create import create_torrent

    payload = os.urandom(200_000)
    (tmp_path / "f.bin").write_bytes(payload)
    meta = parse_metainfo(create_torrent(tmp_path / "f.bin", piece_length=32768))
    fake = FakeSeed(meta, file_server(meta, payload))
    port = await fake.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as s:
            h = await s.add_torrent(meta, out, peers=[("127.0.0.1", port)])
            await h.wait_complete(timeout=20)
    finally:
        await fake.close()
    assert (out / "f.bin").read_bytes() == payload
    assert fake.blocks_served >= meta.total_length // 16384
