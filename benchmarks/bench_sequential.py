"""Sequential vs rarest-first download rate, in one run, from one `swarm seed` on 127.0.0.1.

    .venv/bin/python benchmarks/bench_sequential.py [--size-mib 1024] [--piece-length 1048576]

A `swarm seed` subprocess serves a random file; the same in-process leech
downloads it twice, once rarest-first and once with ``set_sequential`` (what
``--sequential`` / ``--stdout`` use), and once through ``--stdout``'s
streamer into /dev/null. Prints for each: seconds, MiB/s, time to the first
piece, and how much of the file was playable in order (the verified prefix)
when half of it was verified: the point of sequential mode.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 * MiB)
            f.write(os.urandom(n))
            left -= n


async def leech(tfile: Path, out: Path, port: int, mode: str, window: int | None) -> dict[str, float]:
    from swarm import Session

    out.mkdir()
    verified: list[int] = []
    t0 = time.monotonic()
    first = 0.0
    prefix_at_half = 0
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(tfile, out)
        n = h.metainfo.num_pieces
        done = bytearray(n)
        prefix = 0

        def on_piece(i: int) -> None:
            nonlocal first, prefix, prefix_at_half
            if not verified:
                first = time.monotonic() - t0
            verified.append(i)
            done[i] = 1
            while prefix < n and done[prefix]:
                prefix += 1
            if len(verified) == n // 2:
                prefix_at_half = prefix

        h._t.piece_verified.append(on_piece)
        streamed = None
        if mode != "rarest":
            h.set_sequential(True, window)
        if mode == "stdout":
            from swarm.stream import StdoutStreamer

            fd = os.open(os.devnull, os.O_WRONLY)
            streamed = asyncio.ensure_future(StdoutStreamer(h, 0, fd).run())
        h.add_peer("127.0.0.1", port)
        await h.wait_complete(timeout=600)
        if streamed is not None:
            await asyncio.wait_for(streamed, 600)
            os.close(fd)
        elapsed = time.monotonic() - t0
        size = h.metainfo.total_length
    return {
        "seconds": elapsed,
        "mib_s": size / MiB / elapsed,
        "first_piece_s": first,
        "prefix_at_half": prefix_at_half / max(1, n),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--piece-length", type=int, default=MiB)
    ap.add_argument("--window-mib", type=int, default=None, help="read-ahead window (default: swarm's)")
    ap.add_argument("--order", default="rarest,sequential,stdout", help="modes to run, in this order")
    ap.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench-seq-"))
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    data = src / "big.bin"
    if not data.exists() or data.stat().st_size != args.size_mib * MiB:
        make_file(data, args.size_mib * MiB)
    from swarm.create import create_torrent

    tfile = root / "big.torrent"
    tfile.write_bytes(create_torrent(data, piece_length=args.piece_length))
    seed = subprocess.Popen(
        [sys.executable, "-m", "swarm", "seed", str(data), "--torrent", str(tfile), "--port", "0",
         "--host", "127.0.0.1", "--no-dht", "--no-lsd", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=root,
    )
    try:
        assert seed.stdout is not None
        port = 0
        deadline = time.monotonic() + 120
        while not port and time.monotonic() < deadline:
            line = await asyncio.to_thread(seed.stdout.readline)
            if not line:
                raise SystemExit("swarm seed exited")
            ev = json.loads(line)
            if ev["event"] == "listening":
                port = int(ev["port"])
        print(f"{args.size_mib} MiB, pieces of {args.piece_length // 1024} KiB, swarm seed on 127.0.0.1:{port}")
        print(f"{'mode':<12}{'seconds':>9}{'MiB/s':>9}{'1st piece':>11}{'in-order prefix at 50%':>25}")
        window = args.window_mib * MiB if args.window_mib else None
        for mode in args.order.split(","):
            out = root / f"out-{mode}"
            shutil.rmtree(out, ignore_errors=True)
            r = await leech(tfile, out, port, mode, window)
            print(
                f"{mode:<12}{r['seconds']:>9.2f}{r['mib_s']:>9.1f}{r['first_piece_s']:>10.2f}s"
                f"{r['prefix_at_half'] * 100:>24.1f}%"
            )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        seed.terminate()
        try:
            seed.wait(10)
        except subprocess.TimeoutExpired:
            seed.kill()
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
