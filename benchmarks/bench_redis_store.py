#!/usr/bin/env python3
"""Cost of one announce in ``RedisStore``, without HTTP: the tracker's CPU and redis-server's.

Starts a private redis-server on 127.0.0.1 (a free port, no persistence), then
runs ``--concurrency`` coroutines under uvloop, each announcing in a loop: a
random one of ``--swarms`` fixed swarms, a random new 20-byte peer id, a 6-byte
compact address, ``left=0`` one time in four, ``numwant`` 50, ``compact=1`` as
every modern client (``--no-compact``: ``compact=0``, peer ids wanted). After a short
warm-up (untimed) it prints, for each implementation:

- announces/s,
- this process's CPU per announce in µs (``time.process_time``),
- redis-server's CPU per announce in µs (utime+stime from ``/proc/PID/stat``),
  and of it the time spent running the script (INFO commandstats, ``evalsha``):
  the rest is reading the command, writing the reply and the event loop.

    .venv/bin/python benchmarks/bench_redis_store.py [--duration 5] [--concurrency 50]
        [--swarms 1000] [--impl tracker/redis_store.py] [--impl /tmp/old_redis_store.py]
        [--no-hiredis] [--no-compact] [--pool N] [--inflight N] [--batch N]

``--impl PATH`` (repeatable) loads a ``RedisStore`` from that file, so an old
copy (``git show HEAD~N:tracker/redis_store.py > /tmp/old.py``) can be compared
with the current one in the same run; each gets a fresh redis-server.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import random
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_tracker import cpu_seconds, start_redis  # noqa: E402 (a script's neighbour)

from swarm.core.announce import AnnounceRequest  # noqa: E402


def load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_store_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


async def script_usec(store: object) -> int:
    """Time redis-server spent running EVALSHA so far (µs), from INFO commandstats."""
    info = await store.redis.info("commandstats")  # type: ignore[attr-defined]
    return int(info.get("cmdstat_evalsha", {}).get("usec", 0))


async def run(mod: ModuleType, url: str, redis_pid: int, args: argparse.Namespace) -> None:
    store = mod.RedisStore(url)
    if args.inflight:
        store.max_inflight = args.inflight
    if args.batch:
        store.batch_size = args.batch
    rng = random.Random(1)
    hashes = [rng.randbytes(20) for _ in range(args.swarms)]
    pool = [rng.randbytes(20) for _ in range(args.pool * args.swarms)]
    compact = not args.no_compact
    count = 0
    failures = 0
    stop = False

    async def worker(seed: int) -> None:
        nonlocal count, failures
        r = random.Random(seed)
        while not stop:
            n = r.randrange(args.swarms)
            pid = pool[n * args.pool + r.randrange(args.pool)] if args.pool else r.randbytes(20)
            req = AnnounceRequest(
                hashes[n], pid, 6881,
                left=0 if r.random() < 0.25 else 1000, numwant=50, compact=compact,
            )  # fmt: skip
            try:
                await store.announce(req, r.randbytes(6), time.time())
            except Exception:
                failures += 1
            count += 1

    await store.ping()
    tasks = [asyncio.create_task(worker(i)) for i in range(args.concurrency)]
    await asyncio.sleep(args.warmup)
    n0, t0, c0, r0 = count, time.perf_counter(), time.process_time(), cpu_seconds([redis_pid])
    s0 = await script_usec(store)
    await asyncio.sleep(args.duration)
    n1, t1, c1, r1 = count, time.perf_counter(), time.process_time(), cpu_seconds([redis_pid])
    s1 = await script_usec(store)
    stop = True
    await asyncio.gather(*tasks)
    st = await store.stats()
    await store.close()
    n = n1 - n0
    print(
        f"{args.label:<40} {n / (t1 - t0):9.0f} announces/s  "
        f"tracker {1e6 * (c1 - c0) / n:6.1f} µs/announce  "
        f"redis-server {1e6 * (r1 - r0) / n:6.1f} µs/announce (script {(s1 - s0) / n:4.1f})  "
        f"({st['peers']} peers, {failures} failures)",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--swarms", type=int, default=1000)
    p.add_argument(
        "--pool", type=int, default=0,
        help="peer ids from N fixed ones per swarm (re-announces) instead of always new ones",
    )  # fmt: skip
    p.add_argument("--inflight", type=int, default=0, help="set RedisStore.max_inflight")
    p.add_argument("--batch", type=int, default=0, help="set RedisStore.batch_size")
    p.add_argument(
        "--no-compact", action="store_true", help="compact=0 announces (answers list peer ids)"
    )
    p.add_argument("--impl", action="append", metavar="PATH", help="a redis_store.py to load")
    p.add_argument(
        "--no-hiredis", action="store_true", help="redis-py's pure-Python parser even if installed"
    )
    args = p.parse_args()
    if args.no_hiredis:
        sys.modules["hiredis"] = None  # type: ignore[assignment]  # before redis is imported
    try:
        import uvloop
    except ImportError:
        uvloop = None
    for path in args.impl or [str(ROOT / "tracker" / "redis_store.py")]:
        mod = load(path)
        args.label = Path(path).name + (" no-hiredis" if args.no_hiredis else "")
        args.label += f" inflight={args.inflight}" if args.inflight else ""
        args.label += f" batch={args.batch}" if args.batch else ""
        args.label += f" pool={args.pool}" if args.pool else ""
        args.label += " no-compact" if args.no_compact else ""
        with tempfile.TemporaryDirectory() as tmp:
            proc, url = start_redis(Path(tmp))
            try:
                if uvloop is not None:
                    uvloop.run(run(mod, url, proc.pid, args))
                else:
                    asyncio.run(run(mod, url, proc.pid, args))
            finally:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    main()
