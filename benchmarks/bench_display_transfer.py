"""Does the live display slow a transfer down? seed -> get on 127.0.0.1, display on vs off.

One `swarm seed --json` serves a generated file for every run; `swarm get`
then fetches it again and again into an emptied directory, alternating:

* on:  `swarm get` on a pseudo-terminal (tests/ui/ptyrun.py), so it picks the
  live display: rich's refresh thread redraws 4 times a second and this
  process reads every byte it draws, as a terminal would;
* off: the same command with --quiet on the same kind of pty (nothing drawn).

The order within a pair alternates (on/off, off/on, ...). Two figures per run:
wall (the get process from spawn to exit, start-up included) and steady
(size over the seed's own "peer connected" -> "peer disconnected" event times,
i.e. the transfer itself), and the get's CPU seconds per GiB. Prints per-run figures, median MiB/s of each mode
and the on/off ratio; the issue's bar is on/off >= 0.95.

    .venv/bin/python benchmarks/bench_display_transfer.py              # 5 pairs, 512 MiB
    .venv/bin/python benchmarks/bench_display_transfer.py --size 1G --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "ui"))

from ptyrun import run_in_pty  # noqa: E402

PY = sys.executable
MiB = 1 << 20
NET = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    t = text.strip().upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


class Seed:
    """A `swarm seed --json` process; its events are collected by a reader thread."""

    def __init__(self, data: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [PY, "-m", "swarm", "seed", str(data), "--json", *NET],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=data.parent, env=env,
        )
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            with self.cond:
                self.events.append(obj)
                self.cond.notify_all()
        with self.cond:
            self.events.append({"event": "<eof>"})
            self.cond.notify_all()

    def wait_for(self, pred: Any, start: int = 0, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for obj in self.events[start:]:
                    if obj["event"] == "<eof>":
                        raise SystemExit("seed exited")
                    if pred(obj):
                        return obj
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"seed: nothing matched within {timeout}s")
                self.cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def one_run(seed: Seed, port: int, torrent: Path, out: Path, size: int, display: bool) -> dict[str, float]:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    os.sync()  # the last run's dirty pages are not this run's cost
    mark = len(seed.events)
    argv = [PY, "-m", "swarm", "get", str(torrent), "-o", str(out), "--peer", f"127.0.0.1:{port}", *NET]
    if not display:
        argv.append("--quiet")
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    res = run_in_pty(argv, cols=110, rows=30, timeout=300)
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the get, reaped by run_in_pty (the seed is not yet)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    if res.returncode != 0:
        raise SystemExit(f"get exited {res.returncode}:\n{res.text[-2000:]}")
    shown = "━" in res.text and "MiB/s" in res.text
    if shown != display:
        raise SystemExit(f"display {'missing' if display else 'drawn with --quiet'}:\n{res.text[-1500:]}")
    conn = seed.wait_for(lambda o: o["event"] == "peer" and o.get("action") == "connected", mark)
    addr = conn["address"]
    gone = seed.wait_for(
        lambda o: o["event"] == "peer" and o.get("action") == "disconnected" and o.get("address") == addr, mark
    )
    steady = float(gone["time"]) - float(conn["time"])
    if (out / torrent.stem).stat().st_size != size:
        raise SystemExit("downloaded file has the wrong size")
    return {
        "wall": size / MiB / wall,
        "steady": size / MiB / steady,
        "cpu": cpu / (size / (1 << 30)),
        "bytes_drawn": float(len(res.raw)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=512 * MiB, help="file size (default 512M)")
    ap.add_argument("--pairs", type=int, default=5, help="on/off pairs (default 5)")
    ap.add_argument("--dir", type=Path, help="work directory (default: a temporary one)")
    args = ap.parse_args()
    tmp = None if args.dir else tempfile.TemporaryDirectory(prefix="swarm-bench-display-")
    work = args.dir or Path(tmp.name)  # type: ignore[union-attr]
    work.mkdir(parents=True, exist_ok=True)
    data = work / "payload.bin"
    if not data.exists() or data.stat().st_size != args.size:
        with data.open("wb") as f:
            for off in range(0, args.size, 16 * MiB):
                f.write(os.urandom(min(16 * MiB, args.size - off)))
    seed = Seed(data)
    try:
        added = seed.wait_for(lambda o: o["event"] == "added")
        port = int(seed.wait_for(lambda o: o["event"] == "listening")["port"])
        torrent = Path(added["torrent"])
        one_run(seed, port, torrent, work / "dl", args.size, False)  # warm-up, not counted
        runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
        for i in range(args.pairs):
            for display in ((True, False) if i % 2 == 0 else (False, True)):
                r = one_run(seed, port, torrent, work / "dl", args.size, display)
                runs[display].append(r)
                print(
                    f"pair {i + 1} display {'on ' if display else 'off'}  wall {r['wall']:6.1f} MiB/s  "
                    f"steady {r['steady']:6.1f} MiB/s  get cpu {r['cpu']:5.2f} s/GiB  drawn {r['bytes_drawn'] / 1024:.0f} KiB",
                    flush=True,
                )
    finally:
        seed.stop()
        if tmp is not None:
            tmp.cleanup()
    print(f"\n{args.size / MiB:.0f} MiB seed -> get on 127.0.0.1, {args.pairs} pairs, median MiB/s")
    for key in ("wall", "steady"):
        m_on = statistics.median(r[key] for r in runs[True])
        m_off = statistics.median(r[key] for r in runs[False])
        pair_ratio = statistics.median(
            a[key] / b[key] for a, b in zip(runs[True], runs[False], strict=True)
        )
        print(
            f"  {key:<6}  on {m_on:7.1f}   off {m_off:7.1f}   on/off {m_on / m_off:.3f}"
            f"   (median of per-pair ratios {pair_ratio:.3f})"
        )
    c_on = statistics.median(r["cpu"] for r in runs[True])
    c_off = statistics.median(r["cpu"] for r in runs[False])
    paired = statistics.median(a["cpu"] - b["cpu"] for a, b in zip(runs[True], runs[False], strict=True))
    print(f"  get CPU s/GiB  on {c_on:.2f}   off {c_off:.2f}   on-off {c_on - c_off:+.2f} (median of pairs {paired:+.2f})")


if __name__ == "__main__":
    main()
