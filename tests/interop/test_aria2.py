"""aria2c leeches from `swarm seed --with-tracker` on 127.0.0.1 (aria2's DHT, LPD, PEX off).

aria2 cannot be handed a peer for a .torrent, so the seed's embedded tracker
(bound to 127.0.0.1, written into the .torrent) introduces them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import require_tool

pytestmark = pytest.mark.interop

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def test_aria2_downloads_from_swarm_seed(tmp_path: Path) -> None:
    aria2c = require_tool("aria2c")
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(2 * 1024 * 1024 + 5)
    (src / "data.bin").write_bytes(payload)
    seed = subprocess.Popen(
        [*SWARM, "seed", str(src / "data.bin"), "--host", "127.0.0.1", "--port", "0",
         "--with-tracker", "--tracker-port", "0", "--json"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        assert seed.stdout is not None
        listening = False
        deadline = time.monotonic() + 30
        while not listening:
            assert time.monotonic() < deadline, "swarm seed did not start"
            line = seed.stdout.readline()
            assert line, "swarm seed exited"
            listening = json.loads(line)["event"] == "listening"
        out = tmp_path / "aria_out"
        out.mkdir()
        r = subprocess.run(
            [aria2c, "--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
             "--enable-peer-exchange=false", "--seed-time=0", "--listen-port=6991-6999",
             "--disable-ipv6=true", "--summary-interval=0", "--console-log-level=warn",
             "--bt-stop-timeout=60", "--file-allocation=none", "-d", str(out),
             str(tmp_path / "data.bin.torrent")],
            capture_output=True, text=True, timeout=90,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert (out / "data.bin").read_bytes() == payload
    finally:
        seed.terminate()
        assert seed.wait(15) == 0
