"""BitTorrent v2 (BEP 52) next to v1 in one run, on one file.

1. ``swarm create --v1`` vs ``--v2`` (``swarm.create.build_torrent``, the
   file page-cached): wall and process CPU seconds, best of ``--rounds``.
2. ``swarm seed`` -> ``swarm get`` on 127.0.0.1 of the v1 and the v2 torrent
   of that file (``bench_transfer.run_swarm``: each side its own process),
   median of ``--runs``, alternating v1 and v2 so machine noise hits both.

Where the SHA-256 runs: in worker threads, with the GIL released (OpenSSL),
as SHA-1 does for v1: ``create`` hashes 16 KiB blocks and Merkle subtrees in
its hashing threads; ``get`` checks each piece (block leaves up to its piece
layer hash) in the storage thread job that then writes it; ``seed`` re-checks
pieces it loads for uploads the same way.

    .venv/bin/python benchmarks/bench_v2.py                 # 512 MiB
    .venv/bin/python benchmarks/bench_v2.py --size 128M --runs 1
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_transfer import GiB, MiB, parse_size, run_swarm, times  # noqa: E402 (a script's neighbour)

from swarm.create import build_torrent  # noqa: E402

VERSIONS: tuple[tuple[str, int], ...] = (("v1", 1), ("v2", 2))


def time_create(path: Path, piece_length: int, version: int, rounds: int) -> tuple[float, float, bytes]:
    """(best wall s, best CPU s, the .torrent) of build_torrent."""
    best_wall = best_cpu = float("inf")
    data = b""
    for _ in range(rounds):
        wall, cpu = time.perf_counter(), time.process_time()
        data = build_torrent(path, piece_length=piece_length, version=version).data
        best_wall = min(best_wall, time.perf_counter() - wall)
        best_cpu = min(best_cpu, time.process_time() - cpu)
    return best_wall, best_cpu, data


def raw_hash_rates(mib: int = 128, rounds: int = 5) -> dict[str, float]:
    """MiB/s of one thread hashing 1 MiB buffers (best of ``rounds``): SHA-1
    whole, SHA-256 whole, and SHA-256 the v2 way (a call per 16 KiB block,
    then the Merkle pairs)."""
    import hashlib

    from swarm.core import merkle

    buf = os.urandom(MiB)
    rates: dict[str, float] = {}
    for name, fn in (
        ("sha1", lambda: hashlib.sha1(buf).digest()),
        ("sha256", lambda: hashlib.sha256(buf).digest()),
        ("v2 piece", lambda: merkle.root(merkle.leaf_hashes(buf))),
    ):
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(mib):
                fn()
            best = min(best, time.perf_counter() - start)
        rates[name] = mib / best
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=512 * MiB, help="file size (default 512M)")
    ap.add_argument("--piece-length", type=parse_size, default=MiB, help="default 1M")
    ap.add_argument("--rounds", type=int, default=2, help="create: best of (default 2)")
    ap.add_argument("--runs", type=int, default=2, help="transfers: median of (default 2)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="swarm-bench-v2-"))
    try:
        src = work / "src"
        src.mkdir()
        data = src / "bench.bin"
        with open(data, "wb") as fh:
            left = args.size
            while left:
                n = min(left, 64 * MiB)
                fh.write(os.urandom(n))
                left -= n
        with open(data, "rb") as fh:  # into the page cache: hashing, not disk
            while fh.read(16 * MiB):
                pass
        size_mib = args.size / MiB
        print(
            f"{size_mib:.0f} MiB, {args.piece_length // 1024} KiB pieces, {os.cpu_count()} CPUs; "
            f"create best of {args.rounds}, transfers median of {args.runs}"
        )
        rates = raw_hash_rates()
        print(
            "one thread, 1 MiB buffers: SHA-1 {sha1:.0f} MiB/s, SHA-256 {sha256:.0f} MiB/s, "
            "v2 piece (16 KiB leaves + Merkle) {v2 piece:.0f} MiB/s".format_map(rates)
        )
        torrents: dict[str, Path] = {}
        created: dict[str, tuple[float, float]] = {}
        for name, version in VERSIONS:
            wall, cpu, blob = time_create(data, args.piece_length, version, args.rounds)
            created[name] = wall, cpu
            torrents[name] = work / f"{name}.torrent"
            torrents[name].write_bytes(blob)
            print(f"create --{name}: {wall:6.2f} s  {size_mib / wall:7.0f} MiB/s  CPU {cpu:6.2f} s")
        (w1, c1), (w2, c2) = created["v1"], created["v2"]
        print(f"create --v2 / --v1: wall {times(w2, w1)}, CPU {times(c2, c1)}")

        runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in VERSIONS}
        for _ in range(args.runs):
            for name, _ in VERSIONS:
                runs[name].append(run_swarm(data, torrents[name], work / "out", args.size))
        med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
        gib = args.size / GiB
        for name, m in med.items():
            print(
                f"get {name}: {size_mib / m['wall']:7.1f} MiB/s (steady {size_mib / m['steady']:7.1f})"
                f"  leech {m['leech_cpu'] / gib:5.2f} CPU-s/GiB  seed {m['seed_cpu'] / gib:5.2f} CPU-s/GiB"
            )
        v1, v2 = med["v1"], med["v2"]
        print(
            f"get v2 / v1: speed {times(v1['wall'], v2['wall'])}, "
            f"leech CPU {times(v2['leech_cpu'], v1['leech_cpu'])}, seed CPU {times(v2['seed_cpu'], v1['seed_cpu'])}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
