"""A file changed under a seed: the seed stops serving (and advertising) what no
longer verifies, says so once, and never sends bad data; the leecher completes
from an intact seed without a single hash failure."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


async def _poll(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_changed_file_under_seed_is_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    payload = os.urandom(1_000_000)
    bad_src, good_src, out = tmp_path / "bad", tmp_path / "good", tmp_path / "out"
    for d in (bad_src, good_src, out):
        d.mkdir()
    (bad_src / "f.bin").write_bytes(payload)
    (good_src / "f.bin").write_bytes(payload)
    data = create_torrent(bad_src / "f.bin", piece_length=32768)
    meta = parse_metainfo(data)
    async with (
        Session("127.0.0.1", 0) as bad_s,
        Session("127.0.0.1", 0) as good_s,
        Session("127.0.0.1", 0) as get_s,
    ):
        bad = await bad_s.add_torrent(data, bad_src, seed_only=True)
        assert bad.status().state == "seeding"
        bad_t = bad._t
        events: list[tuple[str, dict[str, Any]]] = []

        async def collect() -> None:
            async for ev in bad_t.events():
                events.append(ev)

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0)  # let the collector subscribe
        # overwrite the whole file under the running seed (same size, new bytes)
        (bad_src / "f.bin").write_bytes(os.urandom(len(payload)))

        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", bad_s.port or 0)])
        await _poll(lambda: bad_t.uploader.lost_pieces >= 3, 20, "the seed to notice the changed file")
        # it no longer advertises or serves those pieces, and says so once, without a traceback
        assert bad_t.have.count == meta.num_pieces - bad_t.uploader.lost_pieces
        assert bad.status().extra["lost_pieces"] == bad_t.uploader.lost_pieces
        await _poll(lambda: any(k == "error" for k, _ in events), 5, "an error event")
        errors = [f for k, f in events if k == "error"]
        assert len(errors) == 1 and errors[0]["fatal"] is False
        assert "f.bin" in errors[0]["message"]
        warnings = [
            r for r in caplog.records
            if r.levelno == logging.WARNING and "changed on disk" in r.getMessage()
        ]
        assert len(warnings) == 1 and str(bad_src / "f.bin") in warnings[0].getMessage()
        assert bad.status().state == "seeding" and bad.status().error is None
        # the leecher got nothing bad: no piece verified, no hash failure
        st = leech.status()
        assert st.extra["hash_failures"] == 0
        assert not (out / "f.bin").exists() or st.verified == 0

        good = await good_s.add_torrent(data, good_src, seed_only=True)
        assert good.status().state == "seeding"
        leech.add_peer("127.0.0.1", good_s.port or 0)
        await leech.wait_complete(timeout=30)
        assert leech.status().extra["hash_failures"] == 0
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
    assert (out / "f.bin").read_bytes() == payload
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
