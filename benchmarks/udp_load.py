"""A BEP 15 announce load generator: several processes, each a few UDP sockets with a
window of announces in flight (closed loop), random peers over fixed swarms.

Used by ``bench_tracker.py --udp``; alone::

    .venv/bin/python benchmarks/udp_load.py PORT [--duration 10] [--procs 2] [--swarms 1000]

Plain non-blocking sockets and ``selectors`` (no asyncio): a Python sender costs
about 10-15 µs a datagram, so on a small machine the generator, not a C
tracker, may be what saturates; the cores it used are reported beside the rate.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import selectors
import socket
import struct
import time
from typing import Any

MAGIC = 0x41727101980
_CONNECT = struct.Struct(">QII")
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")
_HEAD = struct.Struct(">II")
#: A request unanswered this long is counted lost and replaced.
LOST_AFTER = 1.0
#: Connection ids are renewed this often (trackers accept them 1-2 minutes).
RECONNECT_EVERY = 50.0


def _connect(sock: socket.socket, rng: random.Random) -> int:
    sock.setblocking(True)
    sock.settimeout(2.0)
    for _ in range(5):
        tid = rng.getrandbits(32)
        sock.send(_CONNECT.pack(MAGIC, 0, tid))
        try:
            while True:
                data = sock.recv(2048)
                if len(data) >= 16 and _HEAD.unpack_from(data) == (0, tid):
                    sock.setblocking(False)
                    return int.from_bytes(data[8:16], "big")
        except TimeoutError:
            continue
    raise SystemExit("the tracker does not answer UDP connects")


def load(
    port: int, hashes: list[bytes], duration: float, sockets: int, window: int, seed: int
) -> dict[str, Any]:
    """One process's run: answers, errors, lost requests and latencies (seconds)."""
    rng = random.Random(seed)
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(sockets):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    ids = {s: _connect(s, rng) for s in socks}
    connected_at = time.monotonic()
    pending: dict[socket.socket, dict[int, float]] = {s: {} for s in socks}
    latencies: list[float] = []
    answers = errors = lost = 0

    def send(s: socket.socket) -> None:
        tid = rng.getrandbits(32)
        pkt = _ANNOUNCE.pack(
            ids[s], 1, tid, hashes[rng.randrange(len(hashes))],
            b"-UL0001-" + rng.randbytes(12), 0, 0 if rng.random() < 0.25 else 1000, 0,
            0, 0, rng.getrandbits(32), 50, rng.randrange(1024, 65535),
        )  # fmt: skip
        pending[s][tid] = time.perf_counter()
        try:
            s.send(pkt)
        except BlockingIOError:
            pass  # the socket buffer is full: it will be counted lost and replaced

    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        for _ in range(window):
            send(s)
    end = time.monotonic() + duration
    last_sweep = time.monotonic()
    while (now := time.monotonic()) < end:
        if now - connected_at > RECONNECT_EVERY:
            for s in socks:
                pending[s].clear()
                ids[s] = _connect(s, rng)
                for _ in range(window):
                    send(s)
            connected_at = time.monotonic()
        for key, _ in sel.select(0.05):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            while True:
                try:
                    data = s.recv(4096)
                except BlockingIOError:
                    break
                if len(data) < 8:
                    continue
                action, tid = _HEAD.unpack_from(data)
                sent = pending[s].pop(tid, None)
                if sent is None:
                    continue
                latencies.append(time.perf_counter() - sent)
                if action == 1:
                    answers += 1
                else:
                    errors += 1
                send(s)
        if now - last_sweep > LOST_AFTER:
            last_sweep = now
            cutoff = time.perf_counter() - LOST_AFTER
            for s in socks:
                old = [t for t, sent in pending[s].items() if sent < cutoff]
                for t in old:
                    del pending[s][t]
                    lost += 1
                    send(s)
    for s in socks:
        s.close()
    return {"answers": answers, "errors": errors, "lost": lost, "latencies": latencies}


def _run(args: tuple[Any, ...]) -> dict[str, Any]:
    return load(*args)


def run(
    port: int,
    hashes: list[bytes],
    duration: float,
    procs: int = 2,
    sockets: int = 8,
    window: int = 4,
) -> dict[str, float]:
    """Every process's figures together: ``rps``, ``p50_us``, ``p99_us``, ``errors``, ``lost``."""
    ctx = multiprocessing.get_context("fork")
    jobs = [(port, hashes, duration, sockets, window, 1000 + i) for i in range(procs)]
    started = time.monotonic()
    with ctx.Pool(procs) as pool:
        parts = pool.map(_run, jobs)
    took = time.monotonic() - started
    lat = sorted(x for p in parts for x in p["latencies"])
    answers = sum(p["answers"] for p in parts)
    done = answers + sum(p["errors"] for p in parts)

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1e6 if lat else 0.0

    return {
        "requests": done,
        "rps": done / duration,
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "errors": sum(p["errors"] for p in parts),
        "lost": sum(p["lost"] for p in parts),
        "wall": took,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("port", type=int)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--sockets", type=int, default=8)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--swarms", type=int, default=1000)
    args = p.parse_args()
    rng = random.Random(42)
    hashes = [rng.randbytes(20) for _ in range(args.swarms)]
    r = run(args.port, hashes, args.duration, args.procs, args.sockets, args.window)
    print(
        f"{r['rps']:.0f} announces/s  p50 {r['p50_us'] / 1000:.2f} ms  "
        f"p99 {r['p99_us'] / 1000:.2f} ms  errors {r['errors']}  lost {r['lost']}  "
        f"({os.cpu_count()} CPUs)"
    )


if __name__ == "__main__":
    main()
