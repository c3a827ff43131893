"""Fleet fan-out: an artifact on an HTTP origin reaches N hosts, the origin serving it about once.

    .venv/bin/python examples/fleet_demo.py                       # 64 MiB, 4 hosts, origin at 32 MiB/s
    .venv/bin/python examples/fleet_demo.py --size 256M --hosts 8 --origin-rate 50M

One process runs an HTTP origin (Range requests, its uplink capped at
--origin-rate, every byte it serves counted), a tracker, and N downloaders
whose torrent lists the origin as a BEP 19 web seed (`url-list`). They find
each other through the tracker; each takes from the origin only pieces no
peer of it has, so the fleet pulls each byte from the origin about once.
Then, in the same run, the same N hosts fetch the file straight from the
origin (plain HTTP GETs, all at once) for comparison. Printed: origin bytes
/ file size and the time until every host has the file, for both. Nothing
leaves 127.0.0.1; DHT and LAN discovery are off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from swarm import Session  # noqa: E402
from swarm.cli.get import run_engine
from swarm.core.ratelimit import RateLimit, parse_rate  # noqa: E402
from swarm.create import create_torrent  # noqa: E402
from tracker.server import start_tracker  # noqa: E402

CHUNK = 64 * 1024
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class Origin:
    """A Range-capable file server with one shared uplink cap, counting the bytes it sends."""

    def __init__(self, root: Path, rate: int) -> None:
        self.root = root
        self.uplink = RateLimit(rate, time.monotonic())
        self.served = 0
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = self.root / request.match_info["name"]
        if not path.is_file() or path.parent != self.root:
            return web.Response(status=404)
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        m = RANGE.match(request.headers.get("Range", ""))
        if m:
            start, status = int(m.group(1)), 206
            end = min(size - 1, int(m.group(2))) if m.group(2) else size - 1
        resp = web.StreamResponse(status=status)
        resp.content_length = end - start + 1
        if status == 206:
            resp.headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        await resp.prepare(request)
        with path.open("rb") as f:
            f.seek(start)
            left = end - start + 1
            while left:
                chunk = f.read(min(CHUNK, left))
                delay = self.uplink.reserve(len(chunk), time.monotonic())
                if delay > 0:
                    await asyncio.sleep(delay)  # the origin's uplink
                try:
                    await resp.write(chunk)
                except (ConnectionError, aiohttp.ClientConnectionResetError):
                    break  # the host went away (a downloader finished and closed)
                self.served += len(chunk)
                left -= len(chunk)
        return resp

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{name}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


async def fleet(root: Path, origin: Origin, size: int, hosts: int) -> tuple[float, int]:
    """N swarm downloaders with the origin as web seed: (seconds, origin bytes)."""
    tracker = await start_tracker("127.0.0.1", 0, interval=5, min_interval=1)
    sessions: list[Session] = []
    before = origin.served
    try:
        torrent = await asyncio.to_thread(
            create_torrent, root / "origin" / "artifact.bin", trackers=[tracker.url], web_seeds=[origin.url],
        )
        t0 = time.monotonic()
        handles = []
        for i in range(hosts):
            out = root / f"host{i + 1}"
            out.mkdir(exist_ok=True)
            s = Session("127.0.0.1", 0)
            await s.start()
            sessions.append(s)
            handles.append(await s.add_torrent(torrent, out))
        await asyncio.gather(*(h.wait_complete(timeout=600) for h in handles))
        took = time.monotonic() - t0
        per_host = [sum(w.downloaded for w in h.status().web_seeds) / size for h in handles]
        print("from the origin, per host (file sizes): " + "  ".join(f"{x:.2f}" for x in per_host))
        return took, origin.served - before
    finally:
        for s in sessions:
            await s.close()
        await tracker.close()


async def direct(origin: Origin, size: int, hosts: int) -> tuple[float, int]:
    """N hosts each GET the whole file from the origin at once: (seconds, origin bytes)."""
    before = origin.served
    t0 = time.monotonic()

    async def one() -> None:
        async with aiohttp.ClientSession() as http, http.get(origin.url + "artifact.bin") as resp:
            got = 0
            async for chunk in resp.content.iter_chunked(CHUNK):
                got += len(chunk)
            assert got == size

    await asyncio.gather(*(one() for _ in range(hosts)))
    return time.monotonic() - t0, origin.served - before


async def demo(size: int, hosts: int, rate: int) -> int:
    with tempfile.TemporaryDirectory(prefix="swarm-fleet-") as tmp:
        root = Path(tmp)
        (root / "origin").mkdir()
        (root / "origin" / "artifact.bin").write_bytes(os.urandom(size))
        origin = Origin(root / "origin", rate)
        await origin.start()
        try:
            print(f"origin {origin.url}artifact.bin: {size / 2**20:.0f} MiB, uplink {rate / 2**20:.0f} MiB/s; "
                  f"{hosts} hosts")
            f_time, f_bytes = await fleet(root, origin, size, hosts)
            d_time, d_bytes = await direct(origin, size, hosts)
        finally:
            await origin.close()
        for i in range(hosts):
            data = root / f"host{i + 1}" / "artifact.bin"
            assert data.stat().st_size == size, data
    print(f"{'':28}{'origin bytes / file size':>26}{'all complete (s)':>18}")
    print(f"{'swarm + web seed (BEP 19)':28}{f_bytes / size:>26.2f}{f_time:>18.1f}")
    print(f"{'every host from the origin':28}{d_bytes / size:>26.2f}{d_time:>18.1f}")
    return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_rate, default=64 << 20, help="file size, K/M/G binary (default 64M)")
    ap.add_argument("--hosts", type=int, default=4, help="downloaders (default 4)")
    ap.add_argument("--origin-rate", type=parse_rate, default=32 << 20,
                    help="the origin's uplink in bytes/s, K/M/G binary (default 32M)")
    args = ap.parse_args()
    try:
        sys.exit(run_engine(lambda: demo(args.size, max(1, args.hosts), args.origin_rate)))  # uvloop when importable
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
