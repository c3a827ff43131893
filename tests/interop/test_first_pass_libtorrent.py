"""libtorrent leechers behind a swarm initial seed's first pass (issue 17), on 127.0.0.1.

The first pass refuses a piece another leecher owns with a BEP 6 reject.
libtorrent gives the rejected block back to its picker and asks for the same
block again at once: before the fix a reject per round trip (on loopback tens
of thousands a second, 1.6 million in one 8 s run). A block is now rejected
again only after ``REASK_DELAY``, and only while the seed's uplink has other
work (``uplink_busy``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm import Session
from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from swarm.core.seeding import REASK_DELAY
from swarm.create import create_torrent
from tests.helpers.lt import PLAIN_TCP, lt_session
from tests.helpers.wait import until
from tests.helpers_qa.peers import RawPeer

pytestmark = pytest.mark.interop

LEECHERS = 3
SIZE = 16 * 1024 * 1024
PIECE = 256 * 1024
#: bytes/s: the seed is the bottleneck, so its upload queue fills and the pass refuses
SEED_RATE = 4 * 1024 * 1024


class RejectLog:
    """When the seed rejected each (peer, piece, offset), by wrapping its Uploader."""

    def __init__(self, uploader: Any) -> None:
        self.times: dict[tuple[int, int, int], list[float]] = {}
        reject = uploader.reject

        def logged(peer: Any, index: int, begin: int, length: int) -> None:
            self.times.setdefault((id(peer), index, begin), []).append(time.monotonic())
            reject(peer, index, begin, length)

        uploader.reject = logged

    def shortest_repeat(self) -> float | None:
        """The shortest time between two rejects of one block to one peer (None: no repeat)."""
        gaps = [b - a for ts in self.times.values() for a, b in zip(ts, ts[1:], strict=False)]
        return min(gaps, default=None)


async def test_libtorrent_leechers_complete_behind_the_first_pass_without_a_reject_loop(
    tmp_path: Path,
) -> None:
    lt = require_libtorrent()
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(SIZE)
    (src / "data.bin").write_bytes(payload)
    torrent = create_torrent(src / "data.bin", piece_length=PIECE)
    async with Session("127.0.0.1", 0, max_up=SEED_RATE) as s:
        seed = await s.add_torrent(torrent, src, seed_only=True)
        assert seed._t.uploader.first_pass is not None  # an initial seed runs the pass
        log = RejectLog(seed._t.uploader)
        leechers = []
        for i in range(LEECHERS):
            out = tmp_path / f"lt{i}"
            out.mkdir()
            ses = lt_session(lt, **PLAIN_TCP)
            p = lt.add_torrent_params()
            p.ti = lt.torrent_info(lt.bdecode(torrent))
            p.save_path = str(out)
            leechers.append((ses, ses.add_torrent(p), out))
        for i, (_ses, h, _out) in enumerate(leechers):
            h.connect_peer(("127.0.0.1", s.port or 0))
            for other, _h, _o in leechers[:i]:
                h.connect_peer(("127.0.0.1", other.listen_port()))
        # ~4 s at the seed's rate (one copy, the leechers trade the rest)
        await until(
            lambda: all(h.status().is_seeding for _s, h, _o in leechers), 90, "libtorrent leechers"
        )
        fp = seed._t.uploader.first_pass
        assert fp is None or fp.done  # every piece went out once
    for _ses, _h, out in leechers:
        assert (out / "data.bin").read_bytes() == payload
    assert log.times, "the first pass refused nothing: the seed was not the bottleneck"
    shortest = log.shortest_repeat()
    # libtorrent asks again for a rejected block at once; before the fix this was ~1 ms
    assert shortest is None or shortest >= 0.8 * REASK_DELAY, (
        f"a block rejected again after {shortest:.4f} s"
    )


async def test_a_selective_libtorrent_leecher_gets_a_piece_another_peer_owns_from_an_idle_seed(
    tmp_path: Path,
) -> None:
    """Another peer took one block of piece 0 and went quiet (it owns the piece and never
    announces it); a libtorrent leecher wants only the first file, so the pass never
    ends. Before the fix piece 0 was refused to it for as long as the owner stayed:
    it stalled (and the seed sent rejects in a loop). A seed with nothing else to send
    serves it."""
    lt = require_libtorrent()
    src = tmp_path / "src" / "two"
    src.mkdir(parents=True)
    first, second = os.urandom(1024 * 1024), os.urandom(1024 * 1024)
    (src / "a.bin").write_bytes(first)
    (src / "b.bin").write_bytes(second)
    torrent = create_torrent(src, piece_length=64 * 1024)
    meta = parse_metainfo(torrent)
    async with Session("127.0.0.1", 0) as s:
        await s.add_torrent(torrent, src.parent, seed_only=True)
        owner = await RawPeer.connect(s.port or 0)
        try:
            assert await owner.handshake(meta.info_hash)
            owner.send(wire.encode_have_none() + wire.encode_interested())
            await owner.expect(meta, lambda m: isinstance(m, wire.Unchoke), 10)
            owner.send(wire.encode_request(0, 0, wire.BLOCK_SIZE))
            await owner.expect(meta, lambda m: isinstance(m, wire.Piece), 10)  # piece 0 is its
            out = tmp_path / "lt"
            out.mkdir()
            ses = lt_session(lt, **PLAIN_TCP)
            p = lt.add_torrent_params()
            p.ti = lt.torrent_info(lt.bdecode(torrent))
            p.save_path = str(out)
            p.file_priorities = [4, 0]  # the first file only
            h = ses.add_torrent(p)
            h.connect_peer(("127.0.0.1", s.port or 0))
            await until(lambda: h.status().is_finished, 30, "libtorrent to get the first file")
        finally:
            owner.close()
    assert (out / "two" / "a.bin").read_bytes() == first
