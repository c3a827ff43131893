"""Magnets on a LAN without multicast: `swarm seed` prints a magnet with x.pe (its reachable
address), and `swarm get MAGNET` fetches the metadata from that peer (BEP 9) and downloads."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from stream_peers import make_torrent

from tests.helpers.procs import swarm_get

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


async def test_seed_magnet_carries_xpe_and_get_uses_it(tmp_path: Path) -> None:
    payload, tfile, meta = make_torrent(tmp_path, 700_000, 16384)
    seed = subprocess.Popen(
        [
            *SWARM,
            "seed",
            str(tmp_path / "src" / "f.bin"),
            "--torrent",
            str(tfile),
            "--port",
            "0",
            "--host",
            "127.0.0.1",
            "--no-dht",
            "--no-lsd",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
        cwd=tmp_path,
    )
    try:
        assert seed.stdout is not None
        added = listening = None
        deadline = time.monotonic() + 20
        while listening is None:
            assert time.monotonic() < deadline, "swarm seed did not start"
            line = await asyncio.wait_for(asyncio.to_thread(seed.stdout.readline), 20)
            assert line, "swarm seed exited"
            ev = json.loads(line)
            if ev["event"] == "added":
                added = ev
            elif ev["event"] == "listening":
                listening = ev
        assert added is not None
        magnet = str(added["magnet"])
        assert f"x.pe=127.0.0.1:{listening['port']}" in magnet
        out = tmp_path / "out"
        out.mkdir()
        r = await asyncio.to_thread(
            subprocess.run,
            [
                *swarm_get(magnet, out),
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=ENV,
        )
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in r.stdout.splitlines()]
        kinds = [e["event"] for e in events]
        assert "metadata" in kinds and kinds.index("added") < kinds.index("done")
        md = events[kinds.index("metadata")]
        assert md["name"] == "f.bin"
        assert (out / "f.bin").read_bytes() == payload
        assert events[kinds.index("added")]["info_hash"] == meta.info_hash.hex()
    finally:
        seed.terminate()
        await asyncio.to_thread(seed.communicate, None, 15)
