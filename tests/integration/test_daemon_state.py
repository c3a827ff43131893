"""The daemon's state directory against hostile or damaged contents (issue 23): an unreadable
state.json is kept aside and the daemon starts empty; a symlink planted as .swarm-daemon is
refused (exit 1, one line); a slow event listener is dropped, not buffered without end."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import aiohttp

from swarm.daemon.events import QUEUE_LINES, EventHub
from swarm.daemon.state import Entry, StateStore
from tests.helpers.daemon import LOCAL, daemon
from tests.helpers.procs import ENV, SWARM


async def test_unreadable_state_is_kept_aside(tmp_path: Path) -> None:
    (tmp_path / ".swarm-daemon").mkdir()
    (tmp_path / ".swarm-daemon" / "state.json").write_bytes(b'{"torrents": [{"info_hash": 5}]')
    async with daemon(tmp_path) as d, aiohttp.ClientSession() as http, http.get(f"{d.url}/api/torrents") as r:
        assert await r.json() == []
    assert (tmp_path / ".swarm-daemon" / "state.json.bad").read_bytes().startswith(b'{"torrents"')
    assert "state.json" in await d.stderr()


def test_entries_with_bad_fields_are_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    good = Entry("ab" * 20, str(tmp_path), name="x", verified=10)
    store.save([good])
    assert store.load() == [good]
    for bad in (
        {"info_hash": "zz" * 20, "dir": "/"},
        {"info_hash": "ab" * 20, "dir": "relative"},
        {"info_hash": "ab" * 20, "dir": "/", "files": "*.iso"},
    ):
        (tmp_path / ".swarm-daemon" / "state.json").write_text(json.dumps({"torrents": [bad]}))
        assert store.load() == []


def test_symlinked_state_dir_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    root = tmp_path / "d"
    root.mkdir()
    (root / ".swarm-daemon").symlink_to(elsewhere)
    r = subprocess.run(
        [*SWARM, "daemon", "-o", str(root), "--api", "127.0.0.1:0", *LOCAL],
        capture_output=True, text=True, timeout=30, env=ENV,
    )
    assert r.returncode == 1 and ".swarm-daemon" in r.stderr and "Traceback" not in r.stderr
    assert list(elsewhere.iterdir()) == []


async def test_a_slow_listener_is_dropped() -> None:
    hub = EventHub()
    slow, fast = hub.subscribe(), hub.subscribe()
    for i in range(QUEUE_LINES + 1):
        hub.write(f'{{"n":{i}}}\n')
        while not fast.empty():
            await fast.get()
    assert slow.qsize() == 1 and await slow.get() is None  # its stream ends
    hub.write("last\n")
    assert await asyncio.wait_for(fast.get(), 1) == "last"
