"""What an idle torrent costs in `swarm daemon`, and how fast `GET /api/torrents` answers.

    .venv/bin/python benchmarks/bench_daemon.py [--torrents 200] [--idle 10]

Starts a daemon on 127.0.0.1 (DHT/LSD off), measures its RSS, adds N small
torrents (a 64 KiB file each, seeded through the API), then prints: RSS per
torrent, CPU used over ``--idle`` seconds with nothing happening (per torrent
and in total), and the median and p95 latency of ``GET /api/torrents``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.daemon import poll_torrent, start_daemon  # noqa: E402


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main(n: int, idle: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i in range(n):
            (root / f"f{i:04d}.bin").write_bytes(os.urandom(64 * 1024))
        d = await start_daemon(root)
        pid = d.proc.pid
        try:
            async with aiohttp.ClientSession() as http:
                base = rss_kib(pid)
                ihs = []
                for i in range(n):
                    async with http.post(f"{d.url}/api/torrents", json={"seed": f"f{i:04d}.bin"}) as r:
                        ihs.append((await r.json())["info_hash"])
                for ih in ihs:
                    await poll_torrent(http, d.url, ih, "seeding")
                await asyncio.sleep(2)  # let the adds settle
                full = rss_kib(pid)
                before = cpu_seconds(pid)
                await asyncio.sleep(idle)
                used = cpu_seconds(pid) - before
                times = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    async with http.get(f"{d.url}/api/torrents") as r:
                        assert len(await r.json()) == n
                    times.append((time.perf_counter() - t0) * 1000)
            times.sort()
            print(f"torrents: {n}")
            print(f"RSS: {base} KiB empty, {full} KiB with {n}: {(full - base) / n:.0f} KiB per torrent")
            print(f"idle CPU over {idle:.0f} s: {used:.2f} s total ({used / idle * 100:.1f} % of a core), "
                  f"{used / idle / n * 1e6:.0f} us/s per torrent")
            print(f"GET /api/torrents: median {statistics.median(times):.1f} ms, p95 {times[int(len(times) * 0.95)]:.1f} ms")
        finally:
            await d.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--torrents", type=int, default=200)
    ap.add_argument("--idle", type=float, default=10.0)
    a = ap.parse_args()
    asyncio.run(main(a.torrents, a.idle))
