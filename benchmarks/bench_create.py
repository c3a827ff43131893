"""`swarm create` --v1 vs --v2 vs --hybrid on one file, libtorrent's create_torrent alongside.

Run: .venv/bin/python benchmarks/bench_create.py [MiB] [piece KiB] [rounds]
(default 1024 MiB, 256 KiB pieces, best of 2)

The file is written once and read once before timing, so every run reads it
from the page cache: the figures are hashing cost, not disk speed. Ours is
``swarm.create.build_torrent`` (what `swarm create` runs): the calling thread
reads 1 MiB buffers, worker threads hash them (SHA-1 per piece for v1;
SHA-256 per 16 KiB block plus each piece's Merkle subtree for v2; both for a
hybrid), all in OpenSSL with the GIL released. libtorrent's is
``set_piece_hashes`` with the same piece size and flags (its own disk threads).
"CPU s" is the process CPU time (all threads; the best of the rounds): on a
shared, loaded machine it is steadier than the wall-clock time. Both sides' info-hashes are compared, so a fast wrong answer
cannot pass.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from swarm.create import build_torrent


def timed(fn: Callable[[], tuple[str, str]], rounds: int) -> tuple[float, float, tuple[str, str]]:
    best_wall, best_cpu, out = float("inf"), float("inf"), ("", "")
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        best_wall = min(best_wall, time.perf_counter() - w)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best_wall, best_cpu, out


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    piece = (int(sys.argv[2]) if len(sys.argv) > 2 else 256) * 1024
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    try:
        import libtorrent as lt
    except ImportError:
        lt = None
    with tempfile.TemporaryDirectory(prefix="bench-create-") as tmp:
        path = Path(tmp) / "big.bin"
        chunk = os.urandom(1 << 20)
        with path.open("wb") as fh:
            for _ in range(mib):
                fh.write(chunk)
        with path.open("rb") as fh:  # into the page cache
            while fh.read(1 << 24):
                pass

        def ours(version: int | str) -> Callable[[], tuple[str, str]]:
            def run() -> tuple[str, str]:
                meta = build_torrent(path, piece_length=piece, version=version).meta
                v1 = "" if meta.version == 2 else meta.info_hash_hex
                return v1, meta.info_hash_v2_hex or ""

            return run

        def theirs(flags: int) -> Callable[[], tuple[str, str]]:
            def run() -> tuple[str, str]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    fs = lt.file_storage()
                    lt.add_files(fs, str(path))
                    ct = lt.create_torrent(fs, piece, flags=flags)
                    lt.set_piece_hashes(ct, tmp)
                    ti = lt.torrent_info(ct.generate())
                    hashes = ti.info_hashes()
                    v1 = "" if flags == lt.create_torrent.v2_only else str(hashes.v1)
                    v2 = "" if flags == lt.create_torrent.v1_only else str(hashes.v2)
                    return v1, v2

            return run

        print(
            f"{mib} MiB file, {piece // 1024} KiB pieces, best of {rounds}, "
            f"{os.cpu_count()} CPUs; page-cached"
        )
        print(
            f"{'':>10} {'swarm s':>8} {'MiB/s':>7} {'CPU s':>6}   "
            f"{'libtorrent s':>12} {'MiB/s':>7} {'CPU s':>6}  same hashes"
        )
        base = None
        for label, version, flag_name in (
            ("--v1", 1, "v1_only"),
            ("--v2", 2, "v2_only"),
            ("--hybrid", "hybrid", None),
        ):
            wall, cpu, ours_hash = timed(ours(version), rounds)
            base = base or wall
            line = f"{label:>10} {wall:8.2f} {mib / wall:7.0f} {cpu:6.2f}"
            if lt is not None:
                flags = getattr(lt.create_torrent, flag_name) if flag_name else 0
                lt_wall, lt_cpu, lt_hash = timed(theirs(flags), rounds)
                line += f"   {lt_wall:12.2f} {mib / lt_wall:7.0f} {lt_cpu:6.2f}  {ours_hash == lt_hash}"
            print(line + (f"   (x{wall / base:.2f} of --v1)" if label != "--v1" else ""))


if __name__ == "__main__":
    main()
