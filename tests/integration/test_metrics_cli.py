"""`seed --with-tracker` writes the HTTP and UDP URLs in one tier; `--metrics PORT` on
`seed` and `get` serves Prometheus text whose figures move with a transfer."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from swarm.core.bencode import decode
from tests.helpers.procs import assert_no_tracebacks, events_until, kill_all, spawn_swarm

LOCAL = "127.0.0.1"
QUIET = ("--host", LOCAL, "--port", "0", "--no-dht", "--no-lsd", "--json")


async def drain(proc: asyncio.subprocess.Process) -> None:
    """Read a process's --json events so that a full pipe never blocks it."""
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOCAL, 0))
        return int(s.getsockname()[1])


async def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://{LOCAL}:{port}/metrics", timeout=aiohttp.ClientTimeout(5)) as resp,
    ):
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def pick(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    """The sum of ``name`` over its labels (0 when absent)."""
    return sum(v for (n, _), v in samples.items() if n == name)


async def test_seed_and_get_metrics_during_a_transfer(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(24 * 1024 * 1024 + 7)
    (src / "data.bin").write_bytes(payload)
    seed_metrics, get_metrics = free_port(), free_port()
    procs = []
    drains: list[asyncio.Task[None]] = []
    try:
        seed = await spawn_swarm(
            "seed", str(src / "data.bin"), *QUIET, "--with-tracker", "--tracker-port", "0",
            "--metrics", str(seed_metrics), cwd=tmp_path,
        )  # fmt: skip
        procs.append(seed)
        await events_until(seed, "listening", 60)
        drains = [asyncio.create_task(drain(seed))]
        meta = decode((tmp_path / "data.bin.torrent").read_bytes())
        (tier,) = meta[b"announce-list"]
        assert [u.split(b":")[0] for u in tier] == [b"http", b"udp"]
        assert meta[b"announce"] == tier[0]
        assert tier[0].split(b":")[2] == tier[1].split(b":")[2]  # one port number
        before = await scrape(seed_metrics)
        ih = meta and next(
            dict(labels)["info_hash"]
            for (n, labels), _ in before.items()
            if n == "swarm_torrent_info"
        )
        assert (
            before[
                (
                    "swarm_torrent_info",
                    (("info_hash", ih), ("name", "data.bin"), ("state", "seeding")),
                )
            ]
            == 1
        )
        assert pick(before, "swarm_uploaded_bytes_total") == 0
        assert pick(before, "swarm_verified_bytes") == len(payload)

        out = tmp_path / "out"
        get = await spawn_swarm(
            "get", str(tmp_path / "data.bin.torrent"), "-o", str(out), *QUIET, "--seed",
            "--metrics", str(get_metrics), cwd=tmp_path,
        )  # fmt: skip
        procs.append(get)
        drains.append(asyncio.create_task(drain(get)))
        seen_peer = False
        for _ in range(600):  # scrape while it downloads: every figure read mid-transfer parses
            try:
                during = await scrape(get_metrics)
            except aiohttp.ClientError:
                await asyncio.sleep(0.05)  # not listening yet
                continue
            seen_peer = seen_peer or pick(during, "swarm_peers") >= 1
            if pick(during, "swarm_verified_bytes") == len(payload):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("get did not complete in 30 s")
        assert seen_peer
        assert (out / "data.bin").read_bytes() == payload
        after = await scrape(get_metrics)
        assert pick(after, "swarm_downloaded_bytes_total") >= len(payload)
        assert pick(after, "swarm_pieces") == -(
            -len(payload) // int(pick(after, "swarm_piece_length_bytes"))
        )
        assert pick(after, "swarm_trackers") == 2  # the one tier's two URLs
        # the engine's session counters: bytes by source kind, writes timed, no failures
        got = {
            dict(labels)["direction"]: v
            for (n, labels), v in after.items()
            if n == "swarm_payload_bytes_total" and dict(labels)["kind"] == "peer"
        }
        assert got["down"] == pick(after, "swarm_downloaded_bytes_total")
        assert pick(after, "swarm_disk_write_seconds_count") == pick(after, "swarm_pieces")
        assert pick(after, "swarm_disk_write_seconds_sum") > 0
        assert pick(after, "swarm_hash_failed_pieces_total") == 0
        assert pick(after, "swarm_hash_fail_bans_total") == 0
        seeded = await scrape(seed_metrics)
        assert pick(seeded, "swarm_uploaded_bytes_total") >= len(payload)
        for proc in procs:
            proc.terminate()
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        await assert_no_tracebacks(procs)
    finally:
        await kill_all(procs)
        for task in drains:
            task.cancel()
