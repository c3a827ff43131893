"""`--max-peers-per-ip N` (seed, get, daemon) reaches the session's per-address cap."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

from helpers_qa.peers import RawPeer

from swarm.core import wire
from swarm.core.metainfo import parse_metainfo
from tests.helpers.procs import ENV, SWARM, read_events


async def test_seed_max_peers_per_ip_caps_connections_from_one_address(tmp_path: Path) -> None:
    """With ``--max-peers-per-ip 1`` a second connection from 127.0.0.2 is closed after
    its handshake while the first stays served; another address still gets in (the
    default, 8, would have let both in)."""
    (tmp_path / "share.bin").write_bytes(os.urandom(300_000))
    seed = await asyncio.create_subprocess_exec(
        *SWARM, "seed", "share.bin", "--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd",
        "--json", "--max-peers-per-ip", "1",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=ENV,
    )  # fmt: skip
    peers: list[RawPeer] = []
    try:
        events = await read_events(seed, "listening", 20)
        port = next(e for e in events if e["event"] == "listening")["port"]
        meta = parse_metainfo((tmp_path / "share.bin.torrent").read_bytes())

        async def admitted(source: str) -> RawPeer:
            p = await RawPeer.connect(port, source=source)
            peers.append(p)
            assert await p.handshake(meta.info_hash) is not None
            await p.expect(meta, lambda m: isinstance(m, (wire.HaveAll, wire.BitfieldMsg)), timeout=10)
            return p

        first = await admitted("127.0.0.2")
        second = await RawPeer.connect(port, source="127.0.0.2")
        peers.append(second)
        assert await second.handshake(meta.info_hash) is not None
        assert await second.closed_within(10), "a second connection from the address was kept"
        await admitted("127.0.0.3")
        assert not await first.closed_within(0.2)
    finally:
        for p in peers:
            p.writer.close()
        seed.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(seed.wait(), 10) == 0


def test_max_peers_per_ip_must_be_a_count() -> None:
    for command in (["seed", "x"], ["get", "x"], ["daemon"]):
        r = subprocess.run(
            [*SWARM, *command, "--max-peers-per-ip", "-1"], capture_output=True, text=True, timeout=30, env=ENV
        )
        assert r.returncode == 2 and "expected a whole number, 0 or more" in r.stderr, (command, r.stderr)
