"""Endgame waits for peers that deliver (issue 17) but not for one that went quiet:
the blocks a silent peer holds are asked of another peer within a few seconds,
long before the request timeout (30 s) would give them back."""

from __future__ import annotations

import time
from pathlib import Path

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.core.requests import ENDGAME_PATIENCE, REQUEST_TIMEOUT
from tests.helpers.wait import until
from tests.helpers_qa.peers import ScriptedSeed, data_server
from tests.helpers_qa.torrents import craft


async def test_blocks_held_by_a_quiet_peer_are_fetched_from_another(tmp_path: Path) -> None:
    torrent, payload = craft("quiet.bin", length=8 * 16384, piece_length=2 * 16384)
    meta = parse_metainfo(torrent)
    good = ScriptedSeed(meta, data_server(meta, payload))
    answered: list[int] = []

    def two_then_quiet(index: int, begin: int, length: int) -> bytes | None:
        """Delivers two blocks (so it counts as delivering), then takes requests silently."""
        if len(answered) >= 2:
            return None
        answered.append(index)
        return data_server(meta, payload)(index, begin, length)

    quiet = ScriptedSeed(meta, two_then_quiet)
    async with quiet, good, Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, peers=[("127.0.0.1", quiet.port)])
        await until(lambda: quiet.requests >= 8, 10, "every block requested from the quiet peer")
        started = time.monotonic()
        h._t.add_peer("127.0.0.1", good.port, "tracker")
        await h.wait_complete(timeout=REQUEST_TIMEOUT - 5)
        took = time.monotonic() - started
    assert (tmp_path / "quiet.bin").read_bytes() == payload
    assert len(answered) == 2
    assert took < ENDGAME_PATIENCE + 8, took  # the tick notices the silence; not the 30 s timeout
