"""1,000 connections to one swarm seed while an honest leecher downloads.

The connections come from several loopback source addresses (127.0.0.2,
127.0.0.3, ...: bound before connect), each does a real BitTorrent handshake
and says `interested`; every fifth one also requests random blocks whenever
unchoked (and reads what it gets). Meanwhile `swarm get` downloads the file
from 127.0.0.1. Prints the seed's RSS (must stay under 200 MiB), the honest
leecher's time and rate against the same download with no extra connections,
and how many connections the seed accepted, refused or dropped, and why (its
INFO log: the per-IP cap, the connection cap, evictions). Exits 1 if
the seed's RSS reached the limit, the leecher failed, got different data or
ran at less than --min-speed of its speed alone.

    .venv/bin/python benchmarks/many_connections.py
    .venv/bin/python benchmarks/many_connections.py --connections 300 --size 32M
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import struct
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from soak import ENV, LOCAL, SWARM, MiB, Seed, parse_size, proc_rss, sha256  # noqa: E402

from swarm.core.metainfo import parse_metainfo  # noqa: E402
from swarm.parts.pool import MAX_PEERS  # noqa: E402
from swarm.session import DEFAULT_PEERS_PER_IP  # noqa: E402

BLOCK = 16 * 1024
INTERESTED = struct.pack(">IB", 1, 2)


@dataclass
class Counts:
    attempted: int = 0
    tcp_refused: int = 0  # connect() failed
    accepted: int = 0  # the seed answered the handshake
    closed_before_handshake: int = 0
    dropped_after_handshake: int = 0  # the seed closed it later
    unchoked: int = 0
    blocks_received: int = 0

    def settled(self) -> int:
        """Connections whose handshake outcome is known."""
        return self.tcp_refused + self.accepted + self.closed_before_handshake

    def open_now(self) -> int:
        return self.accepted - self.dropped_after_handshake


class Flood:
    """The 1,000 connections; each lives until stop is set or the seed closes it."""

    def __init__(self, port: int, info_hash: bytes, num_pieces: int, piece_length: int, sources: list[str]):
        self.port, self.info_hash, self.sources = port, info_hash, sources
        self.num_pieces, self.piece_length = num_pieces, piece_length
        self.counts = Counts()
        self.stop = asyncio.Event()
        self.connecting = asyncio.Semaphore(64)  # the seed's listen backlog is finite

    async def one(self, i: int, requesting: bool) -> None:
        c = self.counts
        c.attempted += 1
        async with self.connecting:
            try:
                r, w = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port, local_addr=(self.sources[i % len(self.sources)], 0)),
                    10,
                )
            except (OSError, TimeoutError):
                c.tcp_refused += 1
                return
            peer_id = b"-FL0001-" + os.urandom(12)
            w.write(b"\x13BitTorrent protocol" + bytes(8) + self.info_hash + peer_id)
            try:
                await asyncio.wait_for(r.readexactly(68), 20)
            except (OSError, TimeoutError, asyncio.IncompleteReadError):
                c.closed_before_handshake += 1
                w.transport.abort()
                return
        c.accepted += 1
        w.write(INTERESTED)
        reading = asyncio.create_task(self._read(r, w, requesting))
        beating = asyncio.create_task(self._keep_alive(w))
        stopping = asyncio.create_task(self.stop.wait())
        await asyncio.wait([reading, stopping], return_when=asyncio.FIRST_COMPLETED)
        if reading.done() and not self.stop.is_set():
            c.dropped_after_handshake += 1
        for task in (reading, stopping, beating):
            task.cancel()
        w.transport.abort()

    async def _keep_alive(self, w: asyncio.StreamWriter) -> None:
        """A keep-alive every 30 s, as a well-behaved idle client sends."""
        while True:
            await asyncio.sleep(30)
            w.write(bytes(4))

    async def _read(self, r: asyncio.StreamReader, w: asyncio.StreamWriter, requesting: bool) -> None:
        """Read every message; when requesting, keep 4 block requests out while unchoked."""
        in_flight = 0
        try:
            while True:
                (length,) = struct.unpack(">I", await r.readexactly(4))
                body = await r.readexactly(length) if length else b""
                if not body:
                    continue
                if body[0] == 1:  # unchoke
                    self.counts.unchoked += 1
                    in_flight = 0
                elif body[0] == 7:
                    self.counts.blocks_received += 1
                    in_flight -= 1
                if requesting and body[0] in (1, 7):
                    while in_flight < 4:
                        index = random.randrange(max(1, self.num_pieces - 1))
                        begin = random.randrange(self.piece_length // BLOCK) * BLOCK
                        w.write(struct.pack(">IBIII", 13, 6, index, begin, BLOCK))
                        in_flight += 1
        except (OSError, asyncio.IncompleteReadError):
            return


async def honest_get(torrent: Path, out: Path, port: int, digest: str, name: str, timeout: float) -> float:
    """Seconds `swarm get` took (its data checked by sha256)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)  # older `swarm get -o` refuses a missing directory
    t0 = time.monotonic()
    started = time.time()
    events = out.parent / f"{out.name}.jsonl"
    with events.open("wb") as stdout:
        proc = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(torrent), "-o", str(out), "--peer", f"127.0.0.1:{port}", *LOCAL,
            env=ENV, stdout=stdout, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
    try:
        rc = await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        progress = [ev for ev in map(json.loads, events.read_text().splitlines()) if ev["event"] == "progress"]
        got = progress[-1]["verified"] if progress else 0
        raise RuntimeError(
            f"the honest leecher did not complete in {timeout:.0f} s ({got / MiB:.1f} MiB verified)"
        ) from None
    took = time.monotonic() - t0
    assert proc.stderr is not None
    err = (await proc.stderr.read()).decode(errors="replace")
    if rc != 0 or sha256(out / name) != digest:
        raise RuntimeError(f"the honest leecher failed (exit {rc}): {err[-1000:]}")
    events_seen = [json.loads(line) for line in events.read_text().splitlines()]
    first = next((ev["time"] for ev in events_seen if ev["event"] == "progress" and ev["downloaded"]), None)
    joined = next((ev["time"] for ev in events_seen if ev["event"] == "peer" and ev.get("action") == "connected"), None)
    if first is not None and joined is not None:  # progress comes once a second: the first byte is at most 1 s earlier
        print(f"  {out.name}: connected after {joined - started:.1f} s, first payload after {first - started:.1f} s, "
              f"then {took - (first - started):.1f} s to complete", flush=True)  # fmt: skip
    return took


# Why the seed closed a peer (`closing peer ADDR: REASON` in its INFO log), as printed.
CLOSE_REASONS = {
    "too many connections from this address": "refused by the per-IP cap",
    "too many peers": "refused by the connection cap",
    "making room for a new peer": "evicted to make room",
}


def close_reasons(log: str) -> dict[str, int]:
    """How often the seed closed a peer for each reason of CLOSE_REASONS."""
    counts = dict.fromkeys(CLOSE_REASONS.values(), 0)
    for line in log.splitlines():
        if "closing peer " in line:
            reason = line.rsplit(": ", 1)[-1].strip()
            if reason in CLOSE_REASONS:
                counts[CLOSE_REASONS[reason]] += 1
    return counts


async def peak_rss(pid: int, peak: list[int], stop: asyncio.Event) -> None:
    while not stop.is_set():
        peak[0] = max(peak[0], proc_rss(pid))
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass


def cpu_now(seed_pid: int) -> tuple[float, float, float]:
    """CPU seconds so far of the seed, of this process (the flood's connections) and of
    its finished children (the honest leechers): on a 2-CPU machine the flood's own
    client competes with the seed and the leecher for the cores."""
    fields = Path(f"/proc/{seed_pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ((int(fields[11]) + int(fields[12])) / tick, me.ru_utime + me.ru_stime,
            kids.ru_utime + kids.ru_stime)  # fmt: skip


def cpu_spent(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    return " / ".join(f"{b - a:.1f}" for a, b in zip(before, after, strict=True))


async def run(args: argparse.Namespace, tmp: Path) -> int:
    data = tmp / "seed" / "many.bin"
    data.parent.mkdir()
    rng = random.Random(1000)
    with data.open("wb") as f:
        for _ in range(args.size // MiB):
            f.write(rng.randbytes(MiB))
    digest = sha256(data)
    torrent = tmp / "many.torrent"
    create = await asyncio.create_subprocess_exec(*SWARM, "create", str(data), "-o", str(torrent), "-q", env=ENV)
    assert await create.wait() == 0
    meta = parse_metainfo(torrent.read_bytes())

    seed = await Seed.start(data, torrent, tmp, "--log-level", "INFO")  # INFO: why it closes peers
    pid = seed.proc.pid
    rss_idle = proc_rss(pid)
    peak = [rss_idle]
    stop_sampling = asyncio.Event()
    sampling = asyncio.create_task(peak_rss(pid, peak, stop_sampling))
    cpu0 = cpu_now(pid)
    alone = await honest_get(torrent, tmp / "alone", seed.port, digest, data.name, args.timeout)
    cpu_alone = cpu_spent(cpu0, cpu_now(pid))
    rss_after_alone = proc_rss(pid)
    print(f"seed pid {pid}; honest leecher alone: {alone:.2f} s, {args.size / MiB / alone:.1f} MiB/s", flush=True)

    sources = [f"127.0.0.{2 + i}" for i in range(args.sources)]
    flood = Flood(seed.port, meta.info_hash, meta.num_pieces, meta.piece_length, sources)
    t0 = time.monotonic()
    conns = [asyncio.create_task(flood.one(i, i % 5 == 0)) for i in range(args.connections)]
    deadline = time.monotonic() + 120
    while flood.counts.settled() < args.connections:
        await asyncio.sleep(0.2)  # a progress poll, not a synchronisation: bounded by deadline
        if time.monotonic() > deadline:
            break
    c = flood.counts
    settled = time.monotonic() - t0
    print(f"flood up after {settled:.1f} s: {asdict(c)}; seed RSS {proc_rss(pid) / MiB:.1f} MiB", flush=True)
    open_before = c.open_now()
    error = ""
    cpu0 = cpu_now(pid)
    served_before = c.blocks_received
    try:
        crowded: float | None = await honest_get(torrent, tmp / "crowded", seed.port, digest, data.name, args.timeout)
    except RuntimeError as e:
        crowded, error = None, str(e)
    open_after = c.open_now()
    served_during = c.blocks_received - served_before
    cpu_crowded = cpu_spent(cpu0, cpu_now(pid))
    rss_crowded = proc_rss(pid)
    flood.stop.set()
    await asyncio.wait(conns, timeout=30)
    stop_sampling.set()
    await sampling
    rc, err = await seed.stop()

    problems = []
    print(f"\nconnections: {args.connections} from {args.sources} source addresses "
          f"(at most {args.sources * DEFAULT_PEERS_PER_IP} past the per-IP cap of {DEFAULT_PEERS_PER_IP}; "
          f"the seed keeps {MAX_PEERS})")  # fmt: skip
    print(f"  handshake answered: {c.accepted}, refused at connect: {c.tcp_refused}, "
          f"closed before handshake: {c.closed_before_handshake}, closed by the seed after it: "
          f"{c.dropped_after_handshake}")  # fmt: skip
    print("  closed by the seed: " + ", ".join(f"{why}: {n}" for why, n in close_reasons(err).items()))
    print(f"  open when the honest leecher started: {open_before}, when it ended: {open_after}")
    print(f"  unchokes seen: {c.unchoked}, served to the flood: {c.blocks_received * BLOCK / MiB:.0f} MiB, "
          f"{served_during * BLOCK / MiB:.1f} MiB of it during the honest download")  # fmt: skip
    print(f"CPU-s during the honest download (seed / this process: the flood / leecher, on "
          f"{os.cpu_count()} CPUs): alone {cpu_alone}, with the flood {cpu_crowded}")
    print(f"seed RSS: idle {rss_idle / MiB:.1f} MiB, after one download {rss_after_alone / MiB:.1f} MiB, "
          f"with the flood {rss_crowded / MiB:.1f} MiB, peak {peak[0] / MiB:.1f} MiB (limit {args.rss_limit} MiB)")
    rate_alone = args.size / MiB / alone
    print(f"honest leecher: alone {alone:.2f} s ({rate_alone:.1f} MiB/s)", end="")
    if crowded is not None:
        print(f", with the flood {crowded:.2f} s ({args.size / MiB / crowded:.1f} MiB/s, "
              f"x{alone / crowded:.2f} of alone)")  # fmt: skip
        if alone / crowded < args.min_speed:
            problems.append(f"the honest leecher ran at x{alone / crowded:.2f} of its speed alone")
    else:
        print(f", with the flood: FAILED ({error})")
        problems.append(error)
    if peak[0] >= args.rss_limit * MiB:
        problems.append(f"seed RSS peaked at {peak[0] / MiB:.1f} MiB")
    if rc not in (0, -2) or "Traceback" in err:
        problems.append(f"seed exit {rc}: {err[-1500:]}")
    print("\n" + ("PASS" if not problems else "FAIL:\n  " + "\n  ".join(problems)), flush=True)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument(
        "--sources", type=int, default=20,
        help="loopback source addresses (default 20: 160 connections pass the per-IP cap, the seed keeps 60)",
    )  # fmt: skip
    ap.add_argument("--size", type=parse_size, default=parse_size("256M"), help="file size (default 256M)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds for one honest download")
    ap.add_argument("--rss-limit", type=float, default=200.0, help="MiB the seed's RSS must stay under")
    ap.add_argument("--min-speed", type=float, default=0.67, help="least fraction of the speed alone (0.67)")
    args = ap.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections * 2 + 256  # our sockets; the seed inherits the limit
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    with tempfile.TemporaryDirectory(prefix="swarm-many-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
