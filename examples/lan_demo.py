"""The quick-start demo: a tracker, a seed and downloaders on 127.0.0.1, with the live display.

    bash scripts/demo.sh                     # or: .venv/bin/python examples/lan_demo.py
    .venv/bin/python examples/lan_demo.py --size 512M --leechers 3

One process runs the HTTP tracker, a seed of a generated file whose .torrent
names that tracker, and N downloaders that find the seed (and each other)
through the tracker alone. The first downloader is shown with the same display
`swarm get` uses (live on a terminal, plain lines otherwise). Nothing leaves
127.0.0.1; DHT and LAN discovery are off.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swarm import Session  # noqa: E402
from swarm.cli.get import run_engine
from swarm.create import create_torrent  # noqa: E402
from swarm.ui import choose_mode, make_reporter  # noqa: E402
from tracker.server import start_tracker  # noqa: E402


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


async def demo(size: int, leechers: int, keep: Path | None) -> int:
    tmp = tempfile.TemporaryDirectory(prefix="swarm-demo-")
    root = keep or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    tracker = await start_tracker("127.0.0.1", 0, interval=30)
    sessions: list[Session] = []
    reporter = make_reporter(choose_mode(False, False, sys.stdout.isatty()))
    try:
        src = root / "seed"
        src.mkdir(exist_ok=True)
        data = src / "demo.bin"
        if not data.exists() or data.stat().st_size != size:
            data.write_bytes(os.urandom(size))
        torrent = await asyncio.to_thread(create_torrent, data, trackers=[tracker.url])
        (root / "demo.bin.torrent").write_bytes(torrent)
        print(f"tracker  {tracker.url}")
        seeder = Session("127.0.0.1", 0)
        await seeder.start()
        sessions.append(seeder)
        await seeder.add_torrent(torrent, src, seed_only=True)
        print(f"seed     127.0.0.1:{seeder.port}  ({size / 2**20:.0f} MiB, .torrent in {root})")
        await asyncio.sleep(0.3)  # let the seed's first announce land
        handles = []
        for i in range(leechers):
            out = root / f"leech{i + 1}"
            out.mkdir(exist_ok=True)
            s = Session("127.0.0.1", 0)
            await s.start()
            sessions.append(s)
            handles.append(await s.add_torrent(torrent, out))  # peers come from the tracker
        first = handles[0]
        reporter.start(first.status(), torrent=str(root / "demo.bin.torrent"), path=str(root / "leech1"))
        t0 = time.monotonic()
        done = asyncio.ensure_future(asyncio.gather(*(h.wait_complete() for h in handles)))
        while not done.done():
            reporter.update(first.status())
            await asyncio.wait({done}, timeout=0.25)
        done.result()
        elapsed = time.monotonic() - t0
        reporter.close(first.status())
        shared = sum(h.status().uploaded for h in handles)
        print(
            f"{leechers} downloader(s) finished in {elapsed:.2f} s; "
            f"{shared / 2**20:.1f} MiB of their {leechers * size / 2**20:.0f} MiB came from each other"
        )
        return 0
    finally:
        for s in sessions:
            await s.close()
        await tracker.close()
        if keep is None:
            tmp.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=size_arg, default=256 << 20, help="file size (default 256M)")
    ap.add_argument("--leechers", type=int, default=3, help="downloaders (default 3)")
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = ap.parse_args()
    try:
        sys.exit(run_engine(lambda: demo(args.size, max(1, args.leechers), args.keep)))  # uvloop when importable
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
