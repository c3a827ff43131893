"""BEP 52 transfers through the public API, swarm to swarm on 127.0.0.1:
v2-only torrents end to end, hybrids reached by either info-hash."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import build_torrent
from tests.helpers.trees import same_tree

PL = 32768


def make_tree(root: Path) -> Path:
    """Files that end inside pieces (v2 pads them to piece boundaries), a
    file smaller than a piece and an empty one."""
    d = root / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(3 * PL + 1234))
    (d / "empty.txt").write_bytes(b"")
    (d / "sub" / "b.bin").write_bytes(os.urandom(5 * PL))
    (d / "sub" / "c.txt").write_bytes(b"hello\n" * 1000)
    return d


@pytest.mark.parametrize("version", [2, "hybrid"])
async def test_seed_to_get_v2(tmp_path: Path, version: int | str) -> None:
    src = make_tree(tmp_path)
    data = build_torrent(src, piece_length=PL, version=version).data
    meta = parse_metainfo(data)
    assert meta.version == version
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, tmp_path, seed_only=True)
        assert seed.status().state == "seeding"
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        st = leech.status()
        assert st.state == "seeding" and st.verified == st.total_size
    assert same_tree(src, out / "tree")
    assert not (out / "tree" / ".pad").exists()


async def test_hybrid_seed_answers_its_v2_hash(tmp_path: Path) -> None:
    """A v2 peer of a hybrid handshakes with the truncated SHA-256: the
    session routes it to the same torrent, which answers with that hash."""
    from swarm.peer import MetadataConnection

    src = make_tree(tmp_path)
    data = build_torrent(src, piece_length=PL, version="hybrid").data
    meta = parse_metainfo(data)
    assert meta.info_hash_v2 is not None
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        short = meta.info_hash_v2[:20]
        conn = await get_s.open_connection(
            "127.0.0.1", seed_s.port or 0, short, lambda: MetadataConnection(short, get_s.peer_id)
        )
        try:
            first = await asyncio.wait_for(conn.queue.get(), 10)
            assert getattr(first, "info_hash", first) == short
        finally:
            conn.close()


async def test_a_peer_sending_corrupt_v2_blocks_is_caught(tmp_path: Path) -> None:
    """Blocks whose bytes are wrong fail the Merkle check: the piece is not
    written, the sender is struck and banned, an honest seed completes it."""
    from test_engine_fakepeer import FakeSeed

    from tests.helpers.wait import until

    src = make_tree(tmp_path)
    data = build_torrent(src, piece_length=PL, version=2).data
    meta = parse_metainfo(data)
    stream = bytearray(meta.total_length)  # pads are zeros
    for f in meta.files:
        if not f.pad and f.length:
            stream[f.offset : f.end] = src.joinpath(*f.path[1:]).read_bytes()

    def lie(index: int, begin: int, length: int) -> bytes:
        off = index * PL + begin
        block = bytearray(stream[off : off + length])
        block[length // 2] ^= 0x01  # one bit per block: only a hash can tell
        return bytes(block)

    liar = FakeSeed(meta, lie)
    liar_port = await liar.start()
    out = tmp_path / "out"
    out.mkdir()
    try:
        async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
            await seed_s.add_torrent(data, tmp_path, seed_only=True)
            leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", liar_port)])
            await until(lambda: leech.status().extra["banned"] >= 1, 20, "the liar banned")
            leech.add_peer("127.0.0.1", seed_s.port or 0)
            await leech.wait_complete(timeout=30)
            st = leech.status()
            assert st.extra["hash_failures"] >= 1 and st.hash_fail_bans == 1
    finally:
        await liar.close()
    assert same_tree(src, out / "tree")


async def test_a_hybrid_is_announced_on_the_dht_under_both_hashes(tmp_path: Path) -> None:
    src = make_tree(tmp_path)
    data = build_torrent(src, piece_length=PL, version="hybrid").data
    meta = parse_metainfo(data)
    assert meta.info_hash_v2 is not None
    async with Session("127.0.0.1", 0, enable_dht=True, dht_bootstrap=()) as get_s, Session(
        "127.0.0.1", 0, enable_dht=True, dht_bootstrap=[("127.0.0.1", get_s.port or 0)]
    ) as seed_s:
        await seed_s.add_torrent(data, tmp_path, seed_only=True)
        assert get_s.dht is not None
        for info_hash in (meta.info_hash, meta.info_hash_v2[:20]):
            deadline = asyncio.get_running_loop().time() + 20
            while ("127.0.0.1", seed_s.port) not in await get_s.dht.get_peers(info_hash, timeout=2):
                assert asyncio.get_running_loop().time() < deadline, f"{info_hash.hex()} not announced"
                await asyncio.sleep(0.1)
