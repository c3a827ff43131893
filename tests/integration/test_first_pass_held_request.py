"""An initial seed's first pass holds back a block asked again after a refusal (issue 17).

libtorrent asks for a rejected block again at once; the seed answers that
second request ``REASK_DELAY`` later. If by then the piece may be served (its
owner left, the pass ended, the uplink has room) it is served: before, it was
rejected anyway, and a libtorrent leecher's last blocks waited out the delay
for nothing (3 leechers of 64 MiB on an unthrottled loopback: 1.25 s vs 0.98 s
without the pass).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from swarm.core.seeding import MIN_QUEUED, REASK_DELAY
from swarm.create import create_torrent
from tests.helpers_qa.peers import RawPeer

BLOCK = wire.BLOCK_SIZE
PIECE = 4 * BLOCK
#: bytes/s: the owner's queue stays longer than MIN_QUEUED, so the seed is busy and refuses
SEED_RATE = 64 * 1024
BLOCK_ANSWERS = (wire.Piece, wire.RejectRequest)


def _is(kind: type | tuple[type, ...]) -> Callable[[object], bool]:
    return lambda m: isinstance(m, kind)


@pytest.mark.parametrize("then", ["owner_leaves", "cancel"])
async def test_a_held_request_is_served_when_the_owner_has_left(tmp_path: Path, then: str) -> None:
    """``cancel``: a held request the peer cancels is rejected at once (BEP 6) and never
    served later (that block would arrive unrequested)."""
    src = tmp_path / "data.bin"
    src.write_bytes(os.urandom(64 * PIECE))
    torrent = create_torrent(src, piece_length=PIECE)
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0, max_up=SEED_RATE) as s:
        await s.add_torrent(torrent, tmp_path, seed_only=True)
        port = s.port or 0
        owner, other = await RawPeer.connect(port), await RawPeer.connect(port)
        try:
            for p in (owner, other):
                assert await p.handshake(meta.info_hash)
                p.send(wire.encode_have_none() + wire.encode_interested())
                await p.expect(meta, _is(wire.Unchoke), 10)
            # the owner takes piece 0 and asks for far more than the seed sends in a second
            blocks = MIN_QUEUED // BLOCK + 16
            owner.send(
                b"".join(wire.encode_request(i // 4, (i % 4) * BLOCK, BLOCK) for i in range(blocks))
            )
            await owner.expect(meta, _is(wire.Piece), 10)
            other.send(wire.encode_request(0, 0, BLOCK))
            first = await other.expect(meta, _is(wire.RejectRequest), 5)
            assert first.index == 0  # another's first copy: refused at once
            other.send(wire.encode_request(0, 0, BLOCK))  # asked again at once, as libtorrent does
            if then == "cancel":  # and the owner leaves before the delay is up
                other.send(wire.encode_cancel(0, 0, BLOCK))
                owner.close()
                later = await other.messages(meta, lambda ms: False, 3 * REASK_DELAY)
                answers = [
                    (type(m), m.index, m.begin) for m in later if isinstance(m, BLOCK_ANSWERS)
                ]
                assert answers == [(wire.RejectRequest, 0, 0)], answers  # rejected, not served
                return
            owner.close()  # the owner leaves: piece 0 is free, the uplink has room
            answer = await other.expect(
                meta, _is((wire.Piece, wire.RejectRequest)), 5 + REASK_DELAY
            )
            assert isinstance(answer, wire.Piece), (
                "the held request was rejected though it could be served"
            )
            assert (answer.index, answer.begin) == (0, 0)
        finally:
            owner.close()
            other.close()
