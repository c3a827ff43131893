"""Record docs/display.svg from a real download caught mid-way.

    .venv/bin/python examples/record_display.py            # writes docs/display.svg
    .venv/bin/python examples/record_display.py --size 1G --leechers 3 -o /tmp/d.svg

The same setup as lan_demo.py (a tracker, a seed and N downloaders, all on
127.0.0.1, DHT and LAN discovery off). The first downloader's
``handle.status()`` is polled until its progress is between --low and --high
(30-80 % by default; the one nearest the middle is kept), then rendered by
``swarm.ui.live.render`` (the function the live display calls) into a
recording rich Console and saved as SVG. Nothing in the picture is made up.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402

from swarm import Session  # noqa: E402
from swarm.create import create_torrent  # noqa: E402
from swarm.status import TorrentStatus  # noqa: E402
from swarm.ui.format import fraction_done  # noqa: E402
from swarm.ui.live import render  # noqa: E402
from tracker.server import start_tracker  # noqa: E402


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


async def catch(size: int, leechers: int, low: float, high: float) -> tuple[TorrentStatus, float]:
    """The first downloader's status once its progress is in [low, high], and when it was taken."""
    with tempfile.TemporaryDirectory(prefix="swarm-record-") as tmp:
        root = Path(tmp)
        tracker = await start_tracker("127.0.0.1", 0, interval=30)
        sessions: list[Session] = []
        try:
            src = root / "seed"
            src.mkdir()
            data = src / "ubuntu-24.04-desktop-amd64.iso"  # a name a reader recognises; random bytes
            with data.open("wb") as f:
                for off in range(0, size, 16 << 20):
                    f.write(os.urandom(min(16 << 20, size - off)))
            torrent = await asyncio.to_thread(create_torrent, data, trackers=[tracker.url])
            seeder = Session("127.0.0.1", 0)
            await seeder.start()
            sessions.append(seeder)
            seed = await seeder.add_torrent(torrent, src, seed_only=True)
            # Let the seed's first announce land (polled, with a deadline).
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(
                t.state == "ok" for t in seed.status().trackers
            ):
                await asyncio.sleep(0.02)
            handles = []
            for i in range(leechers):
                s = Session("127.0.0.1", 0)
                await s.start()
                sessions.append(s)
                out = root / f"leech{i + 1}"
                out.mkdir()
                handles.append(await s.add_torrent(torrent, out))
            first = handles[0]
            best: TorrentStatus | None = None
            mid = (low + high) / 2
            when = 0.0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                st = first.status()
                done = fraction_done(st)
                # Keep the in-range snapshot nearest the middle of the range.
                if low <= done <= high and st.down_rate > 0 and st.peers and (
                    best is None or abs(done - mid) < abs(fraction_done(best) - mid)
                ):
                    best, when = st, time.time()
                if done > high or st.state in ("seeding", "stopped", "error"):
                    break
                await asyncio.sleep(0.005)
            if best is None:
                raise SystemExit(
                    f"no snapshot between {low:.0%} and {high:.0%} (last {fraction_done(st):.1%}); "
                    "try a larger --size"
                )
            await asyncio.wait_for(asyncio.gather(*(h.wait_complete() for h in handles)), 120)
            return best, when
        finally:
            for s in sessions:
                await s.close()
            await tracker.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=size_arg, default=1 << 30, help="file size (default 1G)")
    ap.add_argument("--leechers", type=int, default=3, help="downloaders (default 3)")
    ap.add_argument("--low", type=float, default=0.30)
    ap.add_argument("--high", type=float, default=0.80)
    ap.add_argument("--width", type=int, default=110)
    ap.add_argument("--height", type=int, default=22)
    ap.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "display.svg")
    args = ap.parse_args()
    status, when = asyncio.run(catch(args.size, max(1, args.leechers), args.low, args.high))
    console = Console(record=True, width=args.width, height=args.height, file=io.StringIO())
    console.print(render(status, args.width, args.height, now=when))
    console.save_svg(str(args.output), title="swarm get")
    print(f"{args.output}: {fraction_done(status):.1%} done, {len(status.peers)} peers, "
          f"down {status.down_rate / 2**20:.1f} MiB/s")


if __name__ == "__main__":
    main()
