"""BEP 52 hash exchange against a real peer: a libtorrent seed of a v2-only
torrent on 127.0.0.1 answers the piece-layer requests PieceLayerFetcher plans
(a magnet's view: pieces roots only), and swarm.core.hashes verifies them."""

from __future__ import annotations

import asyncio
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core import hashes, wire
from swarm.core.bencode import decode
from swarm.core.peerid import make_peer_id
from tests.helpers.lt import lt_session, wait_seeding

pytestmark = pytest.mark.interop

PIECE_LEN = 16384
SIZES = {"big": 530 * PIECE_LEN + 99, "mid": 5 * PIECE_LEN, "tiny": 100}


def _seed(lt: Any, tmp: Path) -> tuple[Any, bytes, dict[bytes, Any]]:
    top = tmp / "content"
    top.mkdir()
    rng = random.Random(3)
    for name, size in SIZES.items():
        (top / name).write_bytes(rng.randbytes(size))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(top))
        ct = lt.create_torrent(fs, PIECE_LEN, flags=lt.create_torrent.v2_only)
        lt.set_piece_hashes(ct, str(tmp))
        raw = bytes(lt.bencode(ct.generate()))
    ti = lt.torrent_info(lt.bdecode(raw))
    ses = lt_session(lt)
    h = ses.add_torrent({"ti": ti, "save_path": str(tmp)})
    wait_seeding(h, 20, interval=0.02)
    return ses, ti.info_hashes().v2.to_bytes()[:20], decode(raw)


async def _fetch(
    port: int, info_hash: bytes, fetcher: hashes.PieceLayerFetcher, bad: wire.HashRequest
) -> list[wire.Message]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            wire.Handshake(info_hash, make_peer_id(), wire.make_reserved(v2=True)).encode()
        )
        hd = wire.HandshakeDecoder()
        rest = b""
        while not hd.done:
            chunk = await reader.read(65536)
            assert chunk, "libtorrent closed during the handshake"
            rest = hd.feed(chunk)
        # the v2 hash itself makes this a v2 connection: libtorrent sets the
        # upgrade bit only when answering the v1 hash of a hybrid torrent
        assert hd.handshake.info_hash == info_hash and not hd.handshake.v2
        writer.write(wire.encode(bad))
        while (req := fetcher.next_request("lt", 0.0)) is not None:
            writer.write(wire.encode(req))
        dec = wire.MessageDecoder()
        pending, seen = dec.feed(rest), []
        while not fetcher.done or not any(isinstance(m, wire.HashReject) for m in seen):
            while not pending:
                chunk = await reader.read(65536)
                assert chunk, f"libtorrent closed the connection; saw {seen}"
                pending = dec.feed(chunk)
            msg = pending.pop(0)
            if isinstance(msg, (wire.Hashes, wire.HashReject)):
                seen.append(msg)
            if isinstance(msg, wire.Hashes):
                assert fetcher.on_hashes(msg)
        return seen
    finally:
        writer.close()


def test_piece_layers_fetched_from_a_libtorrent_seed(tmp_path: Path) -> None:
    lt = require_libtorrent()
    ses, info_hash, meta = _seed(lt, tmp_path)
    try:
        tree = meta[b"info"][b"file tree"]
        files = [(tree[n.encode()][b""][b"pieces root"], size) for n, size in SIZES.items()]
        fetcher = hashes.PieceLayerFetcher(files, PIECE_LEN)
        # past the block layer (1024 wide). Not a power-of-two length: libtorrent
        # answers those (3 hashes), which our decoder refuses as malformed.
        bad = wire.HashRequest(files[0][0], 0, 4096, 2, 0)
        assert hashes.check_request(bad, SIZES["big"]) is not None
        seen = asyncio.run(asyncio.wait_for(_fetch(ses.listen_port(), info_hash, fetcher, bad), 30))
        assert fetcher.piece_layers() == dict(meta[b"piece layers"])
        assert (
            wire.HashReject(
                *(
                    getattr(bad, f)
                    for f in ("pieces_root", "base_layer", "index", "length", "proof_layers")
                )
            )
            in seen
        )
        assert sum(isinstance(m, wire.Hashes) for m in seen) == 3  # big: 2 chunks, mid: 1
    finally:
        del ses
