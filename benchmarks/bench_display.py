"""What the live display costs: render time per frame, CPU at 4 Hz, and its effect on a busy loop.

    .venv/bin/python benchmarks/bench_display.py [--peers 50] [--seconds 5]

Prints: median/p99 time to build and render one frame (render() plus rich
turning it into terminal output), the CPU share of the refresh thread at
4 Hz, and how much a CPU-bound main thread (standing in for the event loop)
slows down while the display runs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import statistics
import threading
import time

from rich.console import Console

from swarm.status import PeerStatus, TorrentStatus, TrackerStatus
from swarm.ui.live import LiveReporter, render

MiB = 1024 * 1024


def snapshot(n_peers: int, t: float) -> TorrentStatus:
    peers = tuple(
        PeerStatus(
            f"192.168.{i // 250}.{i % 250 + 1}:{6881 + i}", "libtorrent 2.1.1", i % 2 == 0, True, i % 3 == 0,
            i % 2 == 1, i == 5, (i + 1) * 0.37 * MiB, i * 0.01 * MiB, i * MiB, 0, i / max(1, n_peers),
            source=("tracker", "dht", "pex", "incoming")[i % 4], outgoing=i % 4 != 3,
        )
        for i in range(n_peers)
    )
    pieces = 4096
    return TorrentStatus(
        info_hash="ab" * 20, name="ubuntu-24.04-desktop-amd64.iso", state="downloading",
        total_size=pieces * MiB, verified=1700 * MiB, num_pieces=pieces, piece_length=MiB,
        down_rate=180.5 * MiB, up_rate=3.2 * MiB, downloaded=1710 * MiB, uploaded=40 * MiB, peers=peers,
        trackers=(
            TrackerStatus("http://192.168.1.2:6969/announce", "ok", t - 5, t + 1795, None, 40, 10, 30),
            TrackerStatus("udp://192.168.1.2:6969/announce", "error", None, t + 60, "connection refused"),
        ),
        piece_map="#" * 1700 + "+" * 40 + "." * (pieces - 1740), availability=tuple(i % 9 for i in range(pieces)),
        seeds=10, dht_nodes=230, eta=13.0, started_at=t - 10,
    )


def frame_times(n_peers: int, width: int, height: int, frames: int) -> list[float]:
    console = Console(file=io.StringIO(), force_terminal=True, width=width, height=height, color_system="truecolor")
    out = []
    for i in range(frames):
        s = snapshot(n_peers, time.time() + i)
        t0 = time.perf_counter()
        console.print(render(s, width, height))
        out.append(time.perf_counter() - t0)
        console.file = io.StringIO()
    return out


def busy_work(stop: threading.Event) -> int:
    """Stand-in for event-loop work: small Python steps, like per-block bookkeeping."""
    n = 0
    block = b"x" * 64
    while not stop.is_set():
        for _ in range(1000):
            hashlib.sha1(block).digest()
        n += 1000
    return n


def busy_rate(seconds: float) -> float:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    t0 = time.perf_counter()
    n = busy_work(stop)
    return n / (time.perf_counter() - t0)


async def _lateness(seconds: float) -> list[float]:
    """How late 1 ms timers fire: the event loop's responsiveness."""
    import asyncio

    loop = asyncio.get_running_loop()
    late: list[float] = []
    end = loop.time() + seconds
    while loop.time() < end:
        want = loop.time() + 0.001
        await asyncio.sleep(0.001)
        late.append(loop.time() - want)
    return late


def loop_lateness(seconds: float) -> tuple[float, float]:
    import asyncio

    late = sorted(asyncio.run(_lateness(seconds)))
    return late[len(late) // 2], late[int(len(late) * 0.999)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peers", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--width", type=int, default=120)
    ap.add_argument("--height", type=int, default=60)
    a = ap.parse_args()

    ft = sorted(frame_times(a.peers, a.width, a.height, 200))
    med, p99 = statistics.median(ft), ft[int(len(ft) * 0.99)]
    print(f"frame ({a.peers} peers, {a.width}x{a.height}): median {med * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
          f" -> {4 * med * 100:.2f}% of one core at 4 Hz")

    # The real thing: LiveReporter with rich's refresh thread, output to /dev/null on a "terminal".
    # (print() goes through the Live's stdout redirect while it runs: report afterwards.)
    report: list[str] = []
    with open("/dev/null", "w") as devnull:
        console = Console(file=devnull, force_terminal=True, width=a.width, height=a.height, color_system="truecolor")
        s = snapshot(a.peers, time.time())
        rep = LiveReporter(console=console, refresh_per_second=4)
        cpu0, t0 = time.process_time(), time.perf_counter()
        rep.start(s)
        deadline = time.perf_counter() + a.seconds
        while time.perf_counter() < deadline:  # the engine's 4 Hz update(): just a store
            rep.update(snapshot(a.peers, time.time()))
            time.sleep(0.25)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        rep.close()
        report.append(f"LiveReporter at 4 Hz, main thread idle: {cpu / wall * 100:.2f}% of one core")

        # Interleave on/off runs so machine noise hits both alike.
        on: list[float] = []
        off: list[float] = []
        for _ in range(max(1, int(a.seconds))):
            off.append(busy_rate(1.0))
            rep = LiveReporter(console=console, refresh_per_second=4)
            rep.start(s)
            on.append(busy_rate(1.0))
            rep.close()
        rep = LiveReporter(console=console, refresh_per_second=4)
        rep.start(s)
        lat_on = loop_lateness(a.seconds)
        rep.close()
        lat_off = loop_lateness(a.seconds)
        report.append(
            f"asyncio 1 ms timer lateness, median/p99.9: {lat_on[0] * 1e3:.2f}/{lat_on[1] * 1e3:.2f} ms with the"
            f" display, {lat_off[0] * 1e3:.2f}/{lat_off[1] * 1e3:.2f} ms without"
        )
        m_on, m_off = statistics.median(on), statistics.median(off)
        report.append(
            f"busy main thread: {m_on / 1e3:.0f} k steps/s with the display, {m_off / 1e3:.0f} k without"
            f" ({(1 - m_on / m_off) * 100:+.1f}% slowdown)"
        )
    print("\n".join(report))

    t0 = time.perf_counter()
    for _ in range(100_000):
        rep.update(s)
    print(f"update(): {(time.perf_counter() - t0) / 100_000 * 1e9:.0f} ns per call")


if __name__ == "__main__":
    main()
