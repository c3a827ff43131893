"""The engine reports each tracker's announces as `tracker` events (--json, plain log)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from swarm.create import create_torrent


def test_dead_tracker_is_a_tracker_error_event(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(os.urandom(100_000))
    torrent = tmp_path / "f.torrent"
    # port 1 on loopback: nothing listens, the connection is refused at once
    torrent.write_bytes(create_torrent(tmp_path / "f.bin", trackers=["http://127.0.0.1:1/announce"]))
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(out), "--json",
         "--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    event = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # bounded by the pytest timeout; the event comes within ~1 s
            obj = json.loads(line)
            if obj["event"] == "tracker":
                event = obj
                break
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert event is not None
    assert event["action"] == "error"
    assert event["url"] == "http://127.0.0.1:1/announce"
    assert event["error"]
