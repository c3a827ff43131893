"""Picker throughput: picks/s and the picker's cost per 16 KiB block.

A simulated swarm of 50 peers (10 seeds, 40 leechers holding a random half of
the pieces) downloads a torrent of 256 KiB pieces. Each peer keeps a pipeline
of requests; every step delivers one peer's oldest block (``on_block``, and
``piece_passed`` when a piece completes) and refills its pipeline with
``pick(count)``. Reported: picks/s, blocks/s through picker calls only, and
the picker's microseconds per block (what it adds per block on the loop:
timed picker calls, and the CPU time of the whole simulated loop).

    .venv/bin/python benchmarks/bench_picker.py [--pieces 4096 65536] [--blocks N]
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from swarm.core.bitfield import Bitfield
from swarm.core.picker import Block, PiecePicker

BLOCK = 16384
PIECE = 256 * 1024


def run(
    num_pieces: int,
    per_call: int,
    max_blocks: int,
    peers: int = 50,
    depth: int = 64,
    piece: int = PIECE,
    seeds: int | None = None,
) -> dict[str, float]:
    rng = random.Random(42)
    p = PiecePicker(num_pieces, piece, num_pieces * piece, rng=random.Random(1))
    has: dict[int, Bitfield | None] = {}
    for k in range(peers):
        if k < (peers // 5 if seeds is None else seeds):
            has[k] = None
        else:
            bf = Bitfield(num_pieces)
            for i in rng.sample(range(num_pieces), num_pieces // 2):
                bf.set(i)
            has[k] = bf
    # every peer's bitfield arrives, then the first pick (which sorts them in)
    t0 = time.perf_counter()
    for k, bf_or_none in has.items():
        if bf_or_none is None:
            p.add_peer_have_all(k)
        else:
            p.add_peer(k, bf_or_none)
    p.cancel_requests(-1, p.pick(-1, None, 1))
    setup = time.perf_counter() - t0
    queues: dict[int, deque[Block]] = {k: deque() for k in range(peers)}
    picks = 0
    blocks = 0
    pick_time = 0.0
    event_time = 0.0
    clock = time.perf_counter
    done_blocks = 0
    cpu0 = time.process_time()
    while done_blocks < max_blocks and not p.is_complete():
        progressed = False
        for k in range(peers):
            q = queues[k]
            if len(q) <= depth - per_call:
                t = clock()
                got = p.pick(k, has[k], per_call)
                pick_time += clock() - t
                picks += 1
                blocks += len(got)
                q.extend(got)
            if q:
                blk = q.popleft()
                t = clock()
                complete, cancels = p.on_block(k, blk.index, blk.begin)
                for other, c in cancels:
                    queues[other].remove(c)  # type: ignore[index]
                if complete:
                    p.piece_passed(blk.index)
                event_time += clock() - t
                done_blocks += 1
                progressed = True
        if not progressed:
            break
    cpu = time.process_time() - cpu0
    return {
        "setup_ms": setup * 1e3,
        "picks": picks,
        "picks_per_s": picks / pick_time if pick_time else 0.0,
        "blocks_per_s": blocks / pick_time if pick_time else 0.0,
        "us_per_block": (pick_time + event_time) / max(1, done_blocks) * 1e6,
        "cpu_us_per_block": cpu / max(1, done_blocks) * 1e6,
        "blocks_done": done_blocks,
        "complete": float(p.is_complete()),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pieces", type=int, nargs="+", default=[4096, 65536])
    ap.add_argument("--blocks", type=int, default=200_000, help="stop after this many blocks")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"{'pieces':>7} {'per call':>8} {'setup ms':>9} {'picks/s':>10} {'blocks/s':>10} "
        f"{'us/block':>9} {'cpu us/blk':>10} {'blocks':>8} complete"
    )
    cases: list[tuple[str, int, int, dict[str, int]]] = []
    for n in args.pieces:
        for per_call in (1, 16):
            cases.append((f"{n:>7}", n, per_call, {}))
    # what the engine does on loopback: 1 GiB of 1 MiB pieces from two seeds,
    # 500 requests in flight each, refilled 64 at a time
    cases.append(("1G/2sd", 1024, 64, {"peers": 2, "seeds": 2, "depth": 500, "piece": 1 << 20}))
    for label, n, per_call, kw in cases:
        # best of a few runs: the machine is shared and noisy
        runs = [run(n, per_call, args.blocks, **kw) for _ in range(args.repeat)]
        r = min(runs, key=lambda x: x["cpu_us_per_block"])
        r["picks_per_s"] = max(x["picks_per_s"] for x in runs)
        r["blocks_per_s"] = max(x["blocks_per_s"] for x in runs)
        print(
            f"{label:>7} {per_call:>8} {r['setup_ms']:>9.1f} {r['picks_per_s']:>10.0f} "
            f"{r['blocks_per_s']:>10.0f} {r['us_per_block']:>9.2f} "
            f"{r['cpu_us_per_block']:>10.2f} {r['blocks_done']:>8.0f} "
            f"{bool(r['complete'])}"
        )


if __name__ == "__main__":
    main()
