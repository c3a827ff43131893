"""A block that arrives after its request timed out must not touch the piece.

The scenario, step by step with two scripted peers: A starts sending block 0
(garbage) and stalls; its requests time out and the block goes to B, which
delivers it honestly. Then A's late tail arrives. It must land in a throw-away
buffer: before the fix it overwrote B's block in the piece buffer, the piece
failed its hash and B, its only contributor, was struck (one more such piece
bans it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import swarm.torrent as torrent_mod
from swarm import Session
from swarm.core import wire
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import parse_metainfo
from tests.helpers.wait import until
from tests.helpers_qa.peers import RawPeer
from tests.helpers_qa.torrents import craft

BLOCK = wire.BLOCK_SIZE
PLAIN = wire.make_reserved(extensions=False, fast=False, dht=False)


async def test_late_tail_of_a_timed_out_block_is_thrown_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torrent_mod, "TICK", 0.05)
    torrent, payload = craft("late.bin", length=2 * BLOCK, piece_length=2 * BLOCK)
    meta = parse_metainfo(torrent)
    everything = wire.encode_bitfield(Bitfield(1, full=True).to_bytes()) + wire.encode_unchoke()

    def is_request(m: object) -> bool:
        return isinstance(m, wire.Request)

    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path)
        t = h._t
        t.downloader.request_timeout = 1.0
        assert s.port is not None and t.picker is not None
        a = await RawPeer.connect(s.port)
        b = await RawPeer.connect(s.port)
        try:
            # A is asked for the piece, sends half of block 0 (garbage) and stalls
            assert await a.handshake(meta.info_hash, reserved=PLAIN)
            a.send(everything)
            await a.expect(meta, is_request, 5)
            a.send(wire.piece_header(0, 0, BLOCK) + b"\xaa" * (BLOCK // 2))
            a_port = a.writer.get_extra_info("sockname")[1]
            conn_a = await until(
                lambda: next((p for p in t.peers if p.address[1] == a_port), None), 5, "A attached"
            )
            await until(lambda: conn_a.snubbed, 10, "A's requests to time out")
            # B gets block 0 again (and block 1) and delivers block 0 honestly
            assert await b.handshake(meta.info_hash, reserved=PLAIN)
            b.send(everything)
            asked = {(await b.expect(meta, is_request, 5)).begin for _ in range(2)}
            assert asked == {0, BLOCK}
            b.send(wire.encode_piece(0, 0, payload[:BLOCK]))
            await until(lambda: not t.picker.is_needed(0, 0), 5, "B's block 0 to land")
            # now A's late tail, then B's block 1 completes the piece
            mark = conn_a.last_recv
            a.send(b"\xaa" * (BLOCK // 2) + wire.encode_keepalive())
            await until(lambda: conn_a.last_recv > mark, 5, "A's tail to be read")
            b.send(wire.encode_piece(0, BLOCK, payload[BLOCK:]))
            await until(lambda: t.have[0] or t.completion.hash_failures, 10, "the piece to be checked")
            assert t.completion.hash_failures == 0, "A's late bytes corrupted the piece B completed"
            assert not t.pool.strikes and not t.pool.banned
            assert t.downloader.wasted >= BLOCK // 2  # A's block counted as waste
            await h.wait_complete(timeout=10)
        finally:
            a.close()
            b.close()
    assert (tmp_path / "late.bin").read_bytes() == payload
