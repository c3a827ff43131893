"""The wire and extension codecs against a real peer: a libtorrent seed on 127.0.0.1.

Only codecs are exercised here (no engine): handshake, extended handshake,
ut_metadata fetch verified by MetadataAssembler, bitfield/have_all, and every
block requested and landed through the block sink.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.extensions import (
    OUR_EXTENSIONS,
    UT_METADATA_ID,
    ExtHandshake,
    MetadataAssembler,
    MetadataData,
    decode_ext_handshake,
    decode_metadata_message,
    encode_ext_handshake,
    encode_metadata_request,
)
from swarm.core.peerid import client_name, make_peer_id
from tests.helpers.lt import lt_session, make_lt_torrent, wait_seeding

pytestmark = pytest.mark.interop

PIECE_LEN = 32768
SIZE = 10 * PIECE_LEN - 1234


def _seed(lt: Any, tmp: Path) -> tuple[Any, Any, bytes]:
    data = os.urandom(SIZE)
    (tmp / "data.bin").write_bytes(data)
    ti = lt.torrent_info(lt.bdecode(make_lt_torrent(lt, tmp / "data.bin", PIECE_LEN, v1_only=False)))
    ses = lt_session(lt)
    h = ses.add_torrent({"ti": ti, "save_path": str(tmp)})
    wait_seeding(h, 20, interval=0.02)
    return ses, ti, data


async def _leech(port: int, info_hash: bytes, data: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        our_id = make_peer_id()
        writer.write(wire.Handshake(info_hash, our_id, wire.make_reserved(True, True)).encode())
        hd = wire.HandshakeDecoder()
        rest = b""
        while not hd.done:
            chunk = await reader.read(65536)
            assert chunk, "libtorrent closed during the handshake"
            rest = hd.feed(chunk)
        hs = hd.handshake
        assert hs.info_hash == info_hash and hs.extensions and hs.fast

        num_pieces = (SIZE + PIECE_LEN - 1) // PIECE_LEN
        got = bytearray(SIZE)
        view = memoryview(got)
        wanted: set[tuple[int, int]] = set()

        def sink(index: int, begin: int, length: int) -> memoryview | None:
            if (index, begin) not in wanted:
                return None
            off = index * PIECE_LEN + begin
            return view[off : off + length]

        dec = wire.MessageDecoder(num_pieces, PIECE_LEN, SIZE, block_sink=sink)
        writer.write(wire.encode_extended(0, encode_ext_handshake(ExtHandshake(m=OUR_EXTENSIONS))))
        writer.write(wire.encode_interested())

        their: ExtHandshake | None = None
        have: Bitfield | None = None
        unchoked = False
        asm: MetadataAssembler | None = None
        info: bytes | None = None
        seen: set[str] = set()
        pending = dec.feed(rest)
        while info is None or wanted or not unchoked:
            while not pending:  # a read may end mid-message and decode to nothing
                chunk = await reader.read(65536)
                assert chunk, f"libtorrent closed the connection; saw {seen}"
                pending = dec.feed(chunk)
            msg = pending.pop(0)
            seen.add(type(msg).__name__)
            if isinstance(msg, wire.Extended) and msg.ext_id == 0:
                their = decode_ext_handshake(msg.payload)
                assert their.metadata_size is not None
                asm = MetadataAssembler(info_hash, their.metadata_size)
                for i in asm.missing():
                    writer.write(
                        wire.encode_extended(their.m["ut_metadata"], encode_metadata_request(i))
                    )
            elif isinstance(msg, wire.Extended) and msg.ext_id == UT_METADATA_ID:
                assert asm is not None
                md = decode_metadata_message(msg.payload, asm.size)
                assert isinstance(md, MetadataData)
                info = asm.add(md.piece, md.data) or info
            elif isinstance(msg, wire.HaveAll):
                have = Bitfield(num_pieces, full=True)
            elif isinstance(msg, wire.BitfieldMsg):
                have = Bitfield.from_bytes(msg.data, num_pieces)
            elif isinstance(msg, wire.Unchoke) and not unchoked:
                unchoked = True
                assert have is not None and have.all()
                for index in range(num_pieces):
                    plen = min(PIECE_LEN, SIZE - index * PIECE_LEN)
                    for begin in range(0, plen, wire.BLOCK_SIZE):
                        wanted.add((index, begin))
                        n = min(wire.BLOCK_SIZE, plen - begin)
                        writer.write(wire.encode_request(index, begin, n))
            elif isinstance(msg, wire.Piece):
                assert msg.data is None  # it went through the sink
                wanted.remove((msg.index, msg.begin))
        assert bytes(got) == data
        assert their is not None
        return {"info": info, "peer_id": hs.peer_id, "client": their.v, "seen": seen}
    finally:
        writer.close()


def test_codecs_against_a_libtorrent_seed(tmp_path: Path) -> None:
    lt = require_libtorrent()
    ses, ti, data = _seed(lt, tmp_path)
    try:
        info_hash = ti.info_hashes().v1.to_bytes()  # info_hash() is the truncated v2 one
        result = asyncio.run(asyncio.wait_for(_leech(ses.listen_port(), info_hash, data), 30))
        assert result["info"] is not None
        assert hashlib.sha1(result["info"]).digest() == info_hash
        assert client_name(result["peer_id"]).startswith("libtorrent (Rasterbar) 2.")
        assert "libtorrent" in (result["client"] or "")
    finally:
        del ses
