"""Storage throughput: write_piece (hash + pwrite), recheck, read_block with/without cache.

    .venv/bin/python benchmarks/bench_storage.py [--size-mib 1024] [--jobs 2] [--cold]

Pieces come from a pool of 64 random pieces (so 1 GiB costs no 1 GiB of RAM);
the files are real, in a temporary directory on the same disk as --dir.
Figures print next to a bare hashlib baseline measured in the same run.
``--cold`` evicts the written files from the page cache before recheck, to see the disk.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swarm.core.metainfo import FileEntry, Metainfo  # noqa: E402
from swarm.storage import Storage, make_executor  # noqa: E402

MiB = 1024 * 1024
POOL = 64


def build(total: int, piece_length: int, nfiles: int) -> tuple[Metainfo, list[bytes]]:
    rng = random.Random(1)
    pool = [rng.randbytes(piece_length) for _ in range(POOL)]
    npieces = total // piece_length
    hashes = [hashlib.sha1(p).digest() for p in pool]
    pieces = b"".join(hashes[i % POOL] for i in range(npieces))
    # files of unequal sizes so that pieces span file boundaries
    cuts = sorted(rng.randrange(1, total) for _ in range(nfiles - 1))
    bounds = [0, *cuts, total]
    files = tuple(
        FileEntry(("bench", f"f{i:03d}"), bounds[i + 1] - bounds[i], bounds[i])
        for i in range(nfiles)
    )
    meta = Metainfo(
        info_hash=hashlib.sha1(pieces).digest(), info_bytes=b"", name="bench",
        piece_length=piece_length, pieces=pieces, total_length=total,
        files=files, multi_file=True,
    )
    return meta, pool


def hashlib_baseline(pool: list[bytes], total: int, threads: int) -> float:
    def work(start: int) -> None:
        for i in range(start, total // len(pool[0]), threads):
            hashlib.sha1(pool[i % POOL]).digest()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(work, range(threads)))
    return total / MiB / (time.perf_counter() - t0)


async def bench(args: argparse.Namespace, piece_length: int, workdir: Path) -> None:
    total = args.size_mib * MiB
    meta, pool = build(total, piece_length, args.files)
    base = hashlib_baseline(pool, total, args.jobs)
    ex = make_executor(4)
    root = workdir / f"p{piece_length}"
    sem = asyncio.Semaphore(args.jobs)
    write_runs: list[tuple[float, float]] = []
    for _run in range(args.repeat):
        # Each run starts from a clean disk state: earlier dirty pages and
        # deletes (this disk is mounted with `discard`) make single runs noisy.
        if root.exists():
            shutil.rmtree(root)
        os.sync()
        st = Storage(meta, root, executor=ex)
        await st.open()

        async def one(i: int, st: Storage = st) -> None:
            async with sem:
                assert await st.write_piece(i, pool[i % POOL])

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(i) for i in range(meta.num_pieces)))
        write_s, write_cpu = time.perf_counter() - t0, time.process_time() - c0
        t1 = time.perf_counter()
        await st.save_resume()  # fsyncs every written file first
        write_runs.append((write_s, time.perf_counter() - t1, write_cpu))
        await st.close()
    write_runs.sort()
    write_s, sync_s, write_cpu = write_runs[len(write_runs) // 2]
    gib = total / (1024 * MiB)

    if args.cold:  # evict just our files from the page cache (they are fsynced)
        for f in root.rglob("*"):
            if f.is_file():
                fd = os.open(f, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
    st = Storage(meta, root, executor=ex)
    await st.open(create=False)
    t0, c0 = time.perf_counter(), time.process_time()
    have = await st.recheck()
    recheck_s, recheck_cpu = time.perf_counter() - t0, time.process_time() - c0
    assert have.all(), have

    # uploads: 16 KiB blocks of 512 pieces, each block asked for by 2 peers
    n = min(512, meta.num_pieces)
    blocks = [(i, b) for i in range(n) for b in range(0, piece_length, 16384)]
    results: dict[str, float] = {}
    for label, cache in (("cached", 16 * MiB), ("uncached", 0)):
        s2 = Storage(meta, root, executor=ex, read_cache_bytes=cache)
        await s2.open(create=False)
        await s2.recheck()
        t0 = time.perf_counter()
        for i, b in blocks:
            await asyncio.gather(s2.read_block(i, b, 16384), s2.read_block(i, b, 16384))
        results[label] = 2 * len(blocks) * 16384 / MiB / (time.perf_counter() - t0)
        await s2.close()
    await st.close()
    ex.shutdown()
    shutil.rmtree(root)
    print(
        f"piece {piece_length // 1024:>5} KiB  {args.size_mib} MiB  "
        f"write_piece x{args.jobs} (median of {args.repeat}): {total / MiB / write_s:5.0f} MiB/s "
        f"(+fsync: {total / MiB / (write_s + sync_s):5.0f}; {write_cpu / gib:.2f} CPU-s/GiB)   "
        f"recheck{' (cold)' if args.cold else ''}: {total / MiB / recheck_s:5.0f} MiB/s "
        f"({recheck_cpu / gib:.2f} CPU-s/GiB)   "
        f"hashlib x{args.jobs}: {base:7.0f} MiB/s   "
        f"read_block 2 peers cached: {results['cached']:5.0f} MiB/s, "
        f"uncached: {results['uncached']:5.0f} MiB/s",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--jobs", type=int, default=2, help="concurrent write_piece calls")
    p.add_argument("--files", type=int, default=7)
    p.add_argument("--pieces-kib", type=int, nargs="*", default=[256, 1024])
    p.add_argument("--dir", default=None, help="where to put the data (default: a temp dir)")
    p.add_argument("--cold", action="store_true", help="evict our files from the page cache before recheck")
    p.add_argument("--repeat", type=int, default=3, help="write runs; the median is shown")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-storage-") as d:
        for kib in args.pieces_kib:
            asyncio.run(bench(args, kib * 1024, Path(d)))


if __name__ == "__main__":
    main()
