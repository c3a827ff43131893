"""A resume file that cannot be written is a warning, never a failed download.

The download itself is complete and verified on disk; only the shortcut for
the next start is missing (that start rechecks instead). Here ``.swarm`` is a
plain file, so the directory for the resume data cannot be created.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.hooks import OnDone
from tests.helpers.wait import until
from tests.helpers_qa.peers import ScriptedSeed, data_server
from tests.helpers_qa.torrents import craft


async def test_completed_download_survives_a_failed_resume_save(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="swarm")
    torrent, payload = craft("done.bin", length=100_000, piece_length=16384)
    meta = parse_metainfo(torrent)
    (tmp_path / ".swarm").write_bytes(b"in the way")
    async with ScriptedSeed(meta, data_server(meta, payload)) as seed, Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, peers=[("127.0.0.1", seed.port)])
        await h.wait_complete(timeout=20)
        t = h._t
        await until(
            lambda: "cannot save resume data" in caplog.text or t.error, 10, "the save after completion"
        )
        assert t.error is None and t.state == "seeding"
        await h.wait_complete(timeout=1)  # still a success
        # --on-done flushes (fsync + resume save) first: it must still run
        marker = tmp_path / "on-done-ran"
        status = await asyncio.wait_for(OnDone(f"touch '{marker}'").run_when_complete(h), 20)
        assert status == 0 and marker.exists()
        await h.stop()
        assert t.error is None
    assert (tmp_path / "done.bin").read_bytes() == payload
