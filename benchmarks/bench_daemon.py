"""What an idle torrent costs in `swarm daemon`, and how fast `GET /api/torrents` answers,
alone and with libtorrent peers attached.

    .venv/bin/python benchmarks/bench_daemon.py [--torrents 200] [--idle 20] [--lt-sessions 3]

Starts a daemon on 127.0.0.1 (DHT/LSD off) and measures, each over ``--idle``
seconds with nothing happening:

1. the empty daemon: RSS and CPU (the floor: its loop, its timers);
2. with N small torrents (a 64 KiB file each, seeded through the API): RSS and
   CPU per torrent above the floor, and the latency of ``GET /api/torrents``;
3. with ``--lt-sessions`` libtorrent sessions attached (python bindings, on
   127.0.0.1, DHT/LSD/UPnP/NAT-PMP off, TCP): each downloads 3 of the daemon's
   torrents whole, 3 more only their first piece (so it stays connected, a
   leecher that wants nothing more) and seeds 2 torrents of its own (256 KiB)
   that the daemon downloads; once every transfer is done, the same figures
   with those peers still connected.

CPU is read from every thread's ``/proc/PID/task/*/schedstat`` (nanoseconds;
``/proc/PID/stat`` counts 10 ms ticks, too coarse for an idle process).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers.daemon import DaemonProc, poll_torrent, start_daemon  # noqa: E402

#: Per libtorrent session: torrents downloaded whole, by their first piece only, seeded to the daemon.
WHOLE, PARTIAL, SEEDED = 3, 3, 2


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``, in seconds, at nanosecond resolution."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a worker thread that just ended
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


async def idle_cpu(pid: int, seconds: float) -> float:
    """Share of one core used over ``seconds`` of waiting."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def api_latency(
    http: aiohttp.ClientSession, d: DaemonProc, n: int
) -> tuple[list[float], float]:
    """50 ``GET /api/torrents``: sorted wall times (ms) and the daemon's CPU per answer
    (ms; on a machine shared with other work, wall time also counts waiting for a core)."""
    times = []
    cpu = cpu_seconds(d.proc.pid)
    for _ in range(50):
        t0 = time.perf_counter()
        async with http.get(f"{d.url}/api/torrents") as r:
            assert len(await r.json()) == n
        times.append((time.perf_counter() - t0) * 1000)
    return sorted(times), (cpu_seconds(d.proc.pid) - cpu) / 50 * 1000


async def drain(stream: asyncio.StreamReader | None) -> None:
    """Read the daemon's --json events so that a full pipe never blocks it."""
    while stream is not None and await stream.readline():
        pass


class Attached:
    """libtorrent sessions downloading from the daemon and seeding to it."""

    def __init__(self, lt: Any, root: Path, d: DaemonProc, sessions: int) -> None:
        self.lt, self.root, self.d = lt, root, d
        self.sessions = [
            lt.session({
                "listen_interfaces": "127.0.0.1:0", "enable_dht": False, "enable_lsd": False,
                "enable_upnp": False, "enable_natpmp": False, "enable_outgoing_utp": False,
                "enable_incoming_utp": False, "allow_multiple_connections_per_ip": True,
                "close_redundant_connections": False,  # the partial ones stay connected
                "alert_mask": 0,
            })
            for _ in range(sessions)
        ]  # fmt: skip
        self.whole: list[Any] = []
        self.partial: list[Any] = []
        self.seeded: list[str] = []  # info-hashes the daemon downloads

    async def start(self, http: aiohttp.ClientSession, names: list[str]) -> None:
        from tests.helpers.lt import make_lt_torrent

        lt = self.lt
        per = WHOLE + PARTIAL
        for i, ses in enumerate(self.sessions):
            out = self.root.parent / f"lt{i}"
            out.mkdir()
            for j, name in enumerate(names[i * per : (i + 1) * per]):
                p = lt.add_torrent_params()
                p.ti = lt.torrent_info(str(self.root / f"{name}.torrent"))
                p.save_path = str(out)
                if j >= WHOLE:  # the first piece only: it stays connected, wanting nothing
                    p.piece_priorities = [1] + [0] * (p.ti.num_pieces() - 1)
                h = ses.add_torrent(p)
                h.connect_peer(("127.0.0.1", self.d.peer_port))
                (self.whole if j < WHOLE else self.partial).append(h)
            for k in range(SEEDED):
                src = out / f"lt{i}-{k}.bin"
                src.write_bytes(os.urandom(256 * 1024))
                data = make_lt_torrent(lt, src, 16384)
                p = lt.add_torrent_params()
                p.ti = lt.torrent_info(lt.bdecode(data))
                p.save_path = str(out)
                h = ses.add_torrent(p)
                headers = {"Content-Type": "application/x-bittorrent"}
                async with http.post(f"{self.d.url}/api/torrents", data=data, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    self.seeded.append((await r.json())["info_hash"])
                h.connect_peer(("127.0.0.1", self.d.peer_port))

    def done(self) -> bool:
        return all(h.status().is_seeding for h in self.whole) and all(
            h.status().pieces and h.status().pieces[0] for h in self.partial
        )

    def peers(self) -> int:
        return sum(len(h.get_peer_info()) for h in self.whole + self.partial)


async def main(n: int, idle: float, lt_sessions: int) -> None:
    lt: Any = None
    if lt_sessions:
        try:
            import libtorrent as lt
        except ImportError:
            print("libtorrent's python bindings are missing: no peers attached", file=sys.stderr)
            lt_sessions = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "d"
        root.mkdir()
        names = [f"f{i:04d}.bin" for i in range(n)]
        for name in names:
            (root / name).write_bytes(os.urandom(64 * 1024))
        d = await start_daemon(root)
        reader = asyncio.get_running_loop().create_task(drain(d.proc.stdout))
        pid = d.proc.pid
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.sleep(1)  # let the start settle
                empty_rss = rss_kib(pid)
                empty_cpu = await idle_cpu(pid, idle)
                ihs = []
                for name in names:
                    async with http.post(f"{d.url}/api/torrents", json={"seed": name}) as r:
                        ihs.append((await r.json())["info_hash"])
                for ih in ihs:
                    await poll_torrent(http, d.url, ih, "seeding")
                await asyncio.sleep(5)  # let the adds settle (resume data, snapshots, rates)
                full_rss = rss_kib(pid)
                full_cpu = await idle_cpu(pid, idle)
                times = await api_latency(http, d, n)
                print(f"torrents: {n} (64 KiB each), idle figures over {idle:.0f} s")
                print(f"empty daemon: RSS {empty_rss} KiB, CPU {empty_cpu * 100:.2f} % of a core")
                print(
                    f"with {n} idle: RSS {full_rss} KiB, {(full_rss - empty_rss) / n:.0f} KiB per torrent; "
                    f"CPU {full_cpu * 100:.2f} % of a core, "
                    f"{(full_cpu - empty_cpu) / n * 1e6:.1f} us/s per torrent above the empty daemon"
                )
                report_latency(times)
                if lt_sessions:
                    await with_peers(lt, root, d, http, names, n, idle, lt_sessions, empty_cpu)
        finally:
            await d.stop()
            reader.cancel()


async def with_peers(
    lt: Any, root: Path, d: DaemonProc, http: aiohttp.ClientSession, names: list[str], n: int, idle: float, sessions: int, empty_cpu: float,
) -> None:  # fmt: skip
    pid = d.proc.pid
    att = Attached(lt, root, d, sessions)
    t0 = time.monotonic()
    await att.start(http, names)
    deadline = time.monotonic() + 120
    while not att.done():
        assert time.monotonic() < deadline, "libtorrent's downloads did not finish in 120 s"
        await asyncio.sleep(0.1)
    for ih in att.seeded:
        await poll_torrent(http, d.url, ih, "seeding", timeout=120)
    took = time.monotonic() - t0
    await asyncio.sleep(2)
    total = n + len(att.seeded)
    rss = rss_kib(pid)
    cpu = await idle_cpu(pid, idle)
    async with http.get(f"{d.url}/api/torrents") as r:
        listed = await r.json()
    busy = [t for t in listed if t["peers"]]
    times = await api_latency(http, d, total)
    print(
        f"libtorrent: {sessions} sessions downloaded {sessions * WHOLE} torrents whole and "
        f"{sessions * PARTIAL} by their first piece, and seeded {len(att.seeded)} to the "
        f"daemon, in {took:.1f} s"
    )
    print(
        f"with them attached ({sum(t['peers'] for t in listed)} peers on {len(busy)} torrents, "
        f"{total - len(busy)} idle): RSS {rss} KiB; CPU {cpu * 100:.2f} % of a core "
        f"({(cpu - empty_cpu) * 100:.2f} above the empty daemon)"
    )
    report_latency(times)
    for ses in att.sessions:
        ses.pause()


def report_latency(measured: tuple[list[float], float]) -> None:
    times, cpu = measured
    print(
        f"GET /api/torrents: median {statistics.median(times):.1f} ms, "
        f"p95 {times[int(len(times) * 0.95)]:.1f} ms; the daemon's CPU {cpu:.1f} ms per answer"
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--torrents", type=int, default=200)
    ap.add_argument("--idle", type=float, default=20.0)
    ap.add_argument("--lt-sessions", type=int, default=3, help="libtorrent sessions (0: none)")
    a = ap.parse_args()
    asyncio.run(main(a.torrents, a.idle, a.lt_sessions))
