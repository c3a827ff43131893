"""Stopping while a piece is being hashed and written in a worker thread.

The write job is held at a gate (a threading.Event) so that stop()/close()
happen with it in flight. Before the fix the stopping torrent cancelled the
write task, found nothing left to wait for and closed the file descriptors
under the thread: the piece was lost ("storage is not open"), and in a
session with several torrents a reused descriptor number could have received
it.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest
from test_storage_support import make_meta, piece

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.storage import Storage
from tests.helpers.wait import poll, until
from tests.helpers_qa.peers import ScriptedSeed, data_server
from tests.helpers_qa.torrents import craft

PL = 16384


class WriteGate:
    """Holds every Storage._write_job until ``release`` is set (10 s at most)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = Storage._write_job

        def gated(storage: Storage, index: int, mv: memoryview) -> bool:
            self.entered.set()
            self.release.wait(10)
            return real(storage, index, mv)

        monkeypatch.setattr(Storage, "_write_job", gated)


async def test_close_waits_for_a_write_in_flight(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = WriteGate(monkeypatch)
    meta, stream = make_meta([(("f",), 3 * PL)], PL)
    st = Storage(meta, tmp_path)
    await st.open()
    write = asyncio.ensure_future(st.write_piece(1, piece(meta, stream, 1)))
    await until(gate.entered.is_set, 5, "the write job to start")
    write.cancel()  # as a stopping torrent cancels its tasks: the thread goes on
    closing = asyncio.ensure_future(st.close())
    assert not await poll(closing.done, 0.3), "close() did not wait for the write in its thread"
    gate.release.set()
    await asyncio.wait_for(closing, 10)
    assert (tmp_path / "f").read_bytes()[PL : 2 * PL] == piece(meta, stream, 1)


async def test_stop_waits_for_piece_writes_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = WriteGate(monkeypatch)
    torrent, payload = craft("w.bin", length=2 * PL, piece_length=2 * PL)
    meta = parse_metainfo(torrent)
    async with ScriptedSeed(meta, data_server(meta, payload)) as seed, Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, tmp_path, peers=[("127.0.0.1", seed.port)])
        await until(gate.entered.is_set, 10, "the piece to reach its write job")
        stopping = asyncio.ensure_future(h.stop())
        assert not await poll(stopping.done, 0.3), "stop() did not wait for the write"
        gate.release.set()
        await asyncio.wait_for(stopping, 15)
        assert h._t.error is None
    assert (tmp_path / "w.bin").read_bytes() == payload
    st = Storage(meta, tmp_path)
    await st.open(create=False)
    have = await st.load_resume()
    await st.close()
    assert have is not None and have[0], "the piece written while stopping is not in the resume data"
