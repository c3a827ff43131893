"""Seed and fetch a generated file in one process with swarm's public API.

    .venv/bin/python examples/seed_and_fetch.py [--size 64M]

Everything stays on 127.0.0.1: one Session seeds, another downloads from it
(the peer is given directly, no tracker), then the copy is compared.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from swarm import Session  # noqa: E402
from swarm.create import create_torrent  # noqa: E402


def size_arg(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t[-1:] in units else int(t)


async def main(size: int) -> int:
    with tempfile.TemporaryDirectory(prefix="swarm-example-") as tmp:
        root = Path(tmp)
        src, dst = root / "seed", root / "download"
        src.mkdir()
        dst.mkdir()
        data = src / "example.bin"
        data.write_bytes(os.urandom(size))
        torrent = await asyncio.to_thread(create_torrent, data)  # the .torrent bytes

        async with Session("127.0.0.1", 0) as seeder, Session("127.0.0.1", 0) as leecher:
            await seeder.add_torrent(torrent, src, seed_only=True)
            print(f"seeding {data.name} ({size} bytes) on 127.0.0.1:{seeder.port}")
            t0 = time.monotonic()
            handle = await leecher.add_torrent(torrent, dst, peers=[("127.0.0.1", seeder.port or 0)])

            async def show() -> None:
                while True:
                    st = handle.status()
                    print(f"  {st.progress:6.1%}  {st.down_rate / 2**20:7.1f} MiB/s  peers {len(st.peers)}")
                    await asyncio.sleep(0.5)

            ticker = asyncio.create_task(show())
            try:
                await handle.wait_complete(timeout=300)
            finally:
                ticker.cancel()
            elapsed = time.monotonic() - t0
            st = handle.status()
            print(f"done: {st.downloaded} bytes in {elapsed:.2f} s ({size / 2**20 / elapsed:.1f} MiB/s)")

        same = hashlib.sha1(data.read_bytes()).digest() == hashlib.sha1((dst / data.name).read_bytes()).digest()
        print("copy matches the original" if same else "COPY DIFFERS")
        return 0 if same else 1


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=size_arg, default=64 << 20, help="bytes to share (default 64M)")
    sys.exit(asyncio.run(main(ap.parse_args().size)))
