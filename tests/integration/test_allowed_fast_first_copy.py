"""Issue 17: on a LAN every peer is offered the same allowed-fast pieces (BEP 6
derives them from the /24); the seed serves a choked peer such a piece only
while its first copy has not left, and a leecher refused one while choked
stops asking that peer for it."""

from __future__ import annotations

from pathlib import Path

import pytest

import swarm.parts.upload as upload_mod
from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from tests.helpers.wait import until
from tests.helpers_qa.peers import RESERVED, RawPeer
from tests.helpers_qa.torrents import craft

BLOCK = 16384
PIECE = 2 * BLOCK


def is_block_answer(m: object) -> bool:
    return isinstance(m, (wire.Piece, wire.RejectRequest))


async def test_choked_peers_share_one_first_copy_of_an_allowed_fast_piece(tmp_path: Path) -> None:
    torrent, payload = craft("af.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "af.bin").write_bytes(payload)
    fast = wire.allowed_fast_set("127.0.0.1", meta.info_hash, meta.num_pieces)[0]
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(meta, tmp_path, seed_only=True)
        assert s.port is not None
        a, b = await RawPeer.connect(s.port), await RawPeer.connect(s.port)
        try:
            for p in (a, b):
                hs = await p.handshake(meta.info_hash, reserved=RESERVED)
                assert hs is not None and hs.fast
                p.send(wire.encode_have_none())  # not interested: both stay choked
            # a: the whole first copy of its allowed-fast piece
            a.send(wire.encode_request(fast, 0, BLOCK) + wire.encode_request(fast, BLOCK, BLOCK))
            for begin in (0, BLOCK):
                got = await a.expect(meta, is_block_answer, 5)
                assert isinstance(got, wire.Piece) and (got.index, got.begin) == (fast, begin)
            # b, also choked, asks for the same piece: a second copy is refused
            b.send(wire.encode_request(fast, 0, BLOCK))
            got = await b.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.RejectRequest), got
        finally:
            a.close()
            b.close()


async def test_a_leecher_refused_an_allowed_fast_piece_stops_asking_for_it(tmp_path: Path) -> None:
    torrent, _ = craft("af2.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path)
        t = h._t
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None and hs.fast
            p.send(wire.encode_have_all() + wire.encode_allowed_fast(5))  # choking, piece 5 allowed
            req = await p.expect(meta, lambda m: isinstance(m, wire.Request), 5)
            assert req.index == 5
            conn = next(iter(t.peers))
            assert 5 in conn.allowed_fast
            p.send(wire.encode_reject(req.index, req.begin, req.length))
            await until(lambda: 5 not in conn.allowed_fast, 5, "piece 5 to leave the allowed-fast set")
        finally:
            p.close()


async def test_the_seed_reads_a_newcomers_allowed_fast_pieces_before_it_asks(tmp_path: Path) -> None:
    """The first request of a choked newcomer is for an allowed-fast piece: loading
    (and hash-checking) it only then put one disk read in front of the first data,
    5-6 ms on the one-link benchmark (first data 2.05 RTT after the handshake)."""
    torrent, payload = craft("warm.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "warm.bin").write_bytes(payload)
    fast = wire.allowed_fast_set("127.0.0.1", meta.info_hash, meta.num_pieces)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, seed_only=True)
        st = h._t.storage
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None and hs.fast
            await until(lambda: st.cache_misses >= len(fast) and not st.loading, 5, "the warm-up reads")
            misses = st.cache_misses
            p.send(wire.encode_have_none() + wire.encode_request(fast[0], 0, BLOCK))
            got = await p.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.Piece) and got.data == payload[fast[0] * PIECE : fast[0] * PIECE + BLOCK]
            assert st.cache_misses == misses  # served from the cache
        finally:
            p.close()


async def test_an_initial_seed_gives_each_piece_to_one_peer_in_its_first_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unchoked leechers cannot know which pieces the seed is sending to the others;
    the seed does: while some piece has not left it, a piece it is giving one peer
    is refused to another (who then asks for a piece nobody has)."""
    # a seed whose uplink has other work (an idle one serves the second copy: uplink_busy)
    monkeypatch.setattr(upload_mod, "uplink_busy", lambda queued, rate: True)
    torrent, payload = craft("pass.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "pass.bin").write_bytes(payload)
    fast = set(wire.allowed_fast_set("127.0.0.1", meta.info_hash, meta.num_pieces))
    x, y = [i for i in range(meta.num_pieces) if i not in fast][:2]
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(meta, tmp_path, seed_only=True)
        assert s.port is not None
        a, b = await RawPeer.connect(s.port), await RawPeer.connect(s.port)
        try:
            for p in (a, b):
                hs = await p.handshake(meta.info_hash, reserved=RESERVED)
                assert hs is not None and hs.fast
                p.send(wire.encode_have_none() + wire.encode_interested())
                await p.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            a.send(wire.encode_request(x, 0, BLOCK))
            got = await a.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.Piece) and got.index == x
            b.send(wire.encode_request(x, BLOCK, BLOCK))
            got = await b.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.RejectRequest) and got.index == x  # a's piece
            b.send(wire.encode_request(y, 0, BLOCK))
            got = await b.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.Piece) and got.index == y  # a piece nobody has: served
            a.send(wire.encode_request(x, BLOCK, BLOCK))  # the owner gets the rest
            got = await a.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.Piece) and (got.index, got.begin) == (x, BLOCK)
        finally:
            a.close()
            b.close()


async def test_a_leecher_refused_a_piece_by_an_unchoking_seed_asks_it_for_others(tmp_path: Path) -> None:
    torrent, _ = craft("ref.bin", length=10 * PIECE, piece_length=PIECE)  # 20 blocks
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(meta, tmp_path)
        assert s.port is not None
        p = await RawPeer.connect(s.port)
        try:
            hs = await p.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None and hs.fast
            p.send(wire.encode_have_all() + wire.encode_unchoke())
            first = [await p.expect(meta, lambda m: isinstance(m, wire.Request), 5) for _ in range(16)]
            refused = {r.index for r in first}
            for r in first:  # refuse them all (a seed giving these pieces to others)
                p.send(wire.encode_reject(r.index, r.begin, r.length))
            # the 4 blocks of the 2 other pieces, and not the refused ones again
            later = [await p.expect(meta, lambda m: isinstance(m, wire.Request), 5) for _ in range(4)]
            assert not {r.index for r in later} & refused, [r.index for r in later]
        finally:
            p.close()


async def test_the_first_pass_never_leaves_a_peer_without_the_fast_extension_waiting(tmp_path: Path) -> None:
    """A BEP 3 peer cannot be told no (no reject message): refused, it would wait for
    the block until its own timeout. It is served, first pass or not."""
    torrent, payload = craft("plain.bin", length=40 * PIECE, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    (tmp_path / "plain.bin").write_bytes(payload)
    plain = wire.make_reserved(extensions=False, fast=False, dht=False)
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(meta, tmp_path, seed_only=True)
        assert s.port is not None
        a, b = await RawPeer.connect(s.port), await RawPeer.connect(s.port)
        try:
            hs = await a.handshake(meta.info_hash, reserved=RESERVED)
            assert hs is not None and hs.fast
            a.send(wire.encode_have_none() + wire.encode_interested())
            await a.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            assert await b.handshake(meta.info_hash, reserved=plain)
            b.send(wire.encode_interested())
            await b.expect(meta, lambda m: isinstance(m, wire.Unchoke), 5)
            a.send(wire.encode_request(7, 0, BLOCK))  # a owns piece 7 now
            got = await a.expect(meta, is_block_answer, 5)
            assert isinstance(got, wire.Piece) and got.index == 7
            b.send(wire.encode_request(7, BLOCK, BLOCK))
            got = await b.expect(meta, lambda m: isinstance(m, wire.Piece), 5)
            assert (got.index, got.begin) == (7, BLOCK)
        finally:
            a.close()
            b.close()
