"""Churn soak: one swarm seed, N leechers (swarm and libtorrent) killed and restarted for minutes.

Every leecher reaches the seed through its own small TCP relay in this script,
whose upstream side is bound to its own loopback address (127.0.0.10, .11, ...),
so the seed sees one address per leecher, as on a real network; every third
relay also cuts its connections at random moments while blocks flow (mid-piece).
Leechers learn of each other through the seed's PEX. During the run a random
leecher is killed with SIGKILL every few seconds and restarted on the same
directory (it resumes); a leecher that completes has its file compared (sha256)
with the original, is deleted and restarts from nothing, to keep the seed busy.

The seed's RSS, open descriptors (/proc/PID/fd) and asyncio tasks (the `tasks`
field of its --json progress events) are sampled every few seconds. Baseline:
the idle seed after one warm-up download; end: the idle seed after every
leecher has left; both after --settle s of idleness (one interval of the
session's heap trim, swarm/memory.py, so RSS is not read before it). Exits 1 if a leecher never completed, a file differed, the
seed died or wrote a traceback, or descriptors/tasks/RSS did not come back.

    .venv/bin/python benchmarks/soak.py                       # 20 leechers, 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 2 --leechers 8 --size 64M
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm.memory import TRIM_INTERVAL

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
MiB = 1 << 20
SWARM = [PY, "-m", "swarm"]
LOCAL = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd", "--json"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# A libtorrent leecher (settings of tests/helpers/lt.py); exits 0 once its data is complete.
LT_LEECHER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import libtorrent as lt
from tests.helpers.lt import BASE_SETTINGS, PLAIN_TCP
torrent, save, host, port = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
ses = lt.session({**BASE_SETTINGS, **PLAIN_TCP, "alert_mask": 0, "min_reconnect_time": 1})
p = lt.add_torrent_params()
p.ti = lt.torrent_info(torrent)
p.save_path = save
h = ses.add_torrent(p)
h.connect_peer((host, port))
alone_since = time.monotonic()
while not h.status().is_seeding:
    if h.status().num_peers:
        alone_since = time.monotonic()
    elif time.monotonic() - alone_since > 2:  # the relay cut us: dial again
        h.connect_peer((host, port))
        alone_since = time.monotonic()
    time.sleep(0.1)
ses.remove_torrent(h)
del h, ses  # closes the files before the parent hashes them
"""


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    t = text.strip().upper().rstrip("IB")
    return int(float(t[:-1]) * units[t[-1]]) if t and t[-1] in units else int(t)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def proc_rss(pid: int, field: str = "VmRSS") -> int:
    """Resident bytes of pid (VmRSS, or RssAnon: heap only), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def proc_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


# ------------------------------------------------------------------ the seed


class Seed:
    """`swarm seed --json` in a subprocess; keeps its latest progress event."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log
        self.port = 0
        self.progress: dict[str, Any] = {}
        self.listening = asyncio.Event()
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, data: Path, torrent: Path, cwd: Path, *extra: str) -> Seed:
        log = cwd / "seed.err"  # a file: a pipe nobody reads would block a chatty seed
        with log.open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                *SWARM, "seed", str(data), "--torrent", str(torrent), *LOCAL, *extra,
                cwd=cwd, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=stderr,
            )  # fmt: skip
        seed = cls(proc, log)
        await asyncio.wait_for(seed.listening.wait(), 120)
        await seed.until(lambda p: p.get("state") == "seeding", 120, "the seed to verify its data")
        return seed

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            ev = json.loads(line)
            if ev["event"] == "listening":
                self.port = int(ev["port"])
                self.listening.set()
            elif ev["event"] == "progress":
                self.progress = ev
                self.changed.set()

    async def until(self, ok: Any, timeout: float, what: str) -> None:
        """Wait (at most timeout s) for a progress event that satisfies ok."""
        deadline = time.monotonic() + timeout
        while not ok(self.progress):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.returncode is not None:
                raise RuntimeError(f"timed out waiting for {what}: {self.progress}")
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass

    def sample(self) -> dict[str, Any]:
        pid = self.proc.pid
        return {
            "rss_mib": round(proc_rss(pid) / MiB, 1),
            "anon_mib": round(proc_rss(pid, "RssAnon") / MiB, 1),
            "fds": proc_fds(pid),
            "tasks": self.progress.get("tasks"),
            "peers": self.progress.get("peers"),
            "up_mib_s": round(self.progress.get("up_rate", 0) / MiB, 1),
        }

    async def stop(self) -> tuple[int, str]:
        """SIGINT, then its exit code and stderr."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            rc = await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            rc = await self.proc.wait()
        await self.reader
        return rc, self.log.read_text(errors="replace")


# ----------------------------------------------------------------- the relay


@dataclass
class RelayStats:
    connections: int = 0
    cuts: int = 0
    cuts_mid_transfer: int = 0


class Relay:
    """127.0.0.1:port -> seed, the upstream side bound to source_ip; optionally cutting.

    A cutting relay aborts both sides 0.3-4 s into each connection; a cut counts
    as mid-transfer when seed->leecher bytes passed in the last 0.2 s.
    """

    def __init__(self, seed_port: int, source_ip: str, cut: bool, rng: random.Random, stats: RelayStats):
        self.seed_port, self.source_ip, self.cut, self.rng, self.stats = seed_port, source_ip, cut, rng, stats
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _handle(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.seed_port, local_addr=(self.source_ip, 0)), 5
            )
        except (OSError, TimeoutError):
            down_w.transport.abort()
            return
        self.stats.connections += 1
        last_down = [0.0]
        pumps = [
            asyncio.create_task(self._pipe(down_r, up_w, None)),
            asyncio.create_task(self._pipe(up_r, down_w, last_down)),
        ]
        waiters = list(pumps)
        if self.cut:
            waiters.append(asyncio.create_task(asyncio.sleep(self.rng.uniform(0.3, 4))))
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        if self.cut and waiters[-1] in done:
            self.stats.cuts += 1
            if time.monotonic() - last_down[0] < 0.2:
                self.stats.cuts_mid_transfer += 1
        for t in pending:
            t.cancel()
        for w in (down_w, up_w):
            w.transport.abort()

    @staticmethod
    async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter, stamp: list[float] | None) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                if stamp is not None:
                    stamp[0] = time.monotonic()
                await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


# --------------------------------------------------------------- the leechers


@dataclass
class Slot:
    index: int
    kind: str  # "swarm" or "libtorrent"
    directory: Path
    relay_port: int
    completions: int = 0
    kills: int = 0
    bad_files: int = 0
    odd_exits: list[str] = field(default_factory=list)
    proc: asyncio.subprocess.Process | None = None
    started: float = 0.0


class Soak:
    def __init__(self, args: argparse.Namespace, tmp: Path, torrent: Path, name: str, digest: str):
        self.args, self.tmp, self.torrent, self.name, self.digest = args, tmp, torrent, name, digest
        self.rng = random.Random(args.seed_rng)
        self.churn_until = 0.0
        self.slots: list[Slot] = []

    async def spawn(self, slot: Slot) -> asyncio.subprocess.Process:
        slot.directory.mkdir(parents=True, exist_ok=True)
        log = (self.tmp / f"leecher{slot.index}.err").open("ab")
        peer = f"127.0.0.1:{slot.relay_port}"
        if slot.kind == "swarm":
            argv = [*SWARM, "get", str(self.torrent), "-o", str(slot.directory), "--peer", peer, *LOCAL]
        else:
            argv = [PY, "-c", LT_LEECHER, str(ROOT), str(self.torrent), str(slot.directory),
                    "127.0.0.1", str(slot.relay_port)]  # fmt: skip
        try:
            return await asyncio.create_subprocess_exec(
                *argv, env=ENV, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log
            )
        finally:
            log.close()

    async def run_slot(self, slot: Slot) -> None:
        """Download, again and again until the churn ends; after it, until complete once more."""
        while True:
            slot.proc = await self.spawn(slot)
            slot.started = time.monotonic()
            rc = await slot.proc.wait()
            slot.proc = None
            if rc == 0:
                got = slot.directory / self.name
                if got.is_file() and sha256(got) == self.digest:
                    slot.completions += 1
                else:
                    slot.bad_files += 1
                shutil.rmtree(slot.directory)
                if time.monotonic() >= self.churn_until:
                    return
            elif rc == -signal.SIGKILL:
                slot.kills += 1  # keep the directory: the next start resumes
            else:
                err = (self.tmp / f"leecher{slot.index}.err").read_text(errors="replace")
                slot.odd_exits.append(f"exit {rc}: {err.strip().splitlines()[-1:] or ''}")
                if len(slot.odd_exits) > 5:
                    return
            await asyncio.sleep(self.rng.uniform(0.2, 2.0))

    def directory_bytes(self, slot: Slot) -> int:
        """Bytes allocated to the leecher's (sparse) file: roughly what it has received."""
        try:
            return (slot.directory / self.name).stat().st_blocks * 512
        except OSError:
            return 0

    async def killer(self) -> None:
        """SIGKILL a random leecher that has run at least 1 s, every --kill-every s on average."""
        while True:
            await asyncio.sleep(self.rng.expovariate(1 / self.args.kill_every))
            if time.monotonic() >= self.churn_until:
                return
            running = [s for s in self.slots if s.proc is not None and time.monotonic() - s.started > 1]
            if running:
                victim = self.rng.choice(running)
                if victim.proc is not None and victim.proc.returncode is None:
                    victim.proc.kill()


async def sampler(seed: Seed, series: list[dict[str, Any]], t0: float, soak: Soak | None, every: float) -> None:
    while True:
        row = {"t": round(time.monotonic() - t0, 1), **seed.sample()}
        if soak is not None:
            row["done"] = sum(s.completions for s in soak.slots)
            row["kills"] = sum(s.kills for s in soak.slots)
        series.append(row)
        print("  ".join(f"{k}={v}" for k, v in row.items()), flush=True)
        await asyncio.sleep(every)


async def idle_figures(seed: Seed, timeout: float, target: dict[str, Any] | None, settle: float) -> dict[str, Any]:
    """The seed's figures once no peer is connected (and, given target, once fds and tasks
    are back to it or timeout s have passed), then idle for settle s more: the session
    trims its freed heap once a minute (swarm.memory), so RSS is compared after a trim."""
    await seed.until(lambda p: p.get("peers") == 0, timeout, "every peer to leave the seed")
    deadline = time.monotonic() + timeout
    while True:
        fig = seed.sample()
        back = target is None or (fig["fds"] <= target["fds"] and (fig["tasks"] or 0) <= (target["tasks"] or 0))
        if back or time.monotonic() >= deadline:
            if settle > 0:
                print(f"idle; sampling in {settle:g} s, after the seed's periodic heap trim", flush=True)
                await asyncio.sleep(settle)  # a timed trim, nothing to wait on
                fig = seed.sample()
            return fig
        seed.changed.clear()
        try:
            await asyncio.wait_for(seed.changed.wait(), 2)
        except TimeoutError:
            pass


async def soak_main(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    data = tmp / "seed" / "soak.bin"
    data.parent.mkdir()
    rng = random.Random(args.seed_rng)
    with data.open("wb") as f:
        for _ in range(args.size // MiB):
            f.write(rng.randbytes(MiB))
        f.write(rng.randbytes(args.size % MiB))
    digest = sha256(data)
    torrent = tmp / "soak.torrent"
    create = await asyncio.create_subprocess_exec(
        *SWARM, "create", str(data), "-o", str(torrent), "--piece-length", str(args.piece_length), "-q",
        env=ENV,
    )
    assert await create.wait() == 0, "swarm create failed"

    seed = await Seed.start(data, torrent, tmp)
    soak = Soak(args, tmp, torrent, data.name, digest)
    series: list[dict[str, Any]] = []
    t0 = time.monotonic()
    print(f"seed pid {seed.proc.pid} port {seed.port}; {args.leechers} leechers, {args.size / MiB:g} MiB, "
          f"{args.minutes:g} min", flush=True)  # fmt: skip
    idle_start = seed.sample()

    # Warm-up: one download, so caches and allocator pools are filled before the baseline.
    stats = RelayStats()
    warm_relay = Relay(seed.port, "127.0.0.9", False, rng, stats)
    await warm_relay.start()
    warm = Slot(-1, "swarm", tmp / "warm", warm_relay.port)
    soak.churn_until = 0.0
    await asyncio.wait_for(soak.run_slot(warm), 300)
    warm_relay.close()
    baseline = await idle_figures(seed, 60, None, args.settle)
    print(f"idle at start: {idle_start}\nbaseline (idle after warm-up): {baseline}", flush=True)

    relays = []
    for i in range(args.leechers):
        relay = Relay(seed.port, f"127.0.0.{10 + i}", i % 3 == 0, rng, stats)
        await relay.start()
        relays.append(relay)
        kind = "libtorrent" if args.libtorrent and i % 2 == 1 else "swarm"
        soak.slots.append(Slot(i, kind, tmp / f"leecher{i}", relay.port))
    soak.churn_until = time.monotonic() + args.minutes * 60
    sampling = asyncio.create_task(sampler(seed, series, t0, soak, args.sample_every))
    killer = asyncio.create_task(soak.killer())
    runs = [asyncio.create_task(soak.run_slot(s)) for s in soak.slots]
    stuck: list[str] = []
    try:
        await asyncio.wait_for(asyncio.gather(*runs), args.minutes * 60 + args.finish_timeout)
    except TimeoutError:
        for s in soak.slots:
            if s.proc is not None and s.proc.returncode is None:
                got = soak.directory_bytes(s)
                stuck.append(f"leecher {s.index} ({s.kind}, cutting relay: {s.index % 3 == 0}) "
                             f"had {got / MiB:.1f} MiB on disk after {time.monotonic() - s.started:.0f} s")  # fmt: skip
                s.proc.kill()
                await s.proc.wait()
                s.proc = None
    killer.cancel()
    for relay in relays:
        relay.close()
    try:
        end = await idle_figures(seed, 60, baseline, args.settle)
    except RuntimeError as e:
        print(e, flush=True)
        end = seed.sample()
    sampling.cancel()
    rc, err = await seed.stop()
    traced = [f.name for f in sorted(tmp.glob("leecher*.err")) if "Traceback" in f.read_text(errors="replace")]

    rss_slack = max(args.rss_slack, baseline["rss_mib"] * 0.25)
    problems = []
    for what in stuck:
        problems.append(f"not complete --finish-timeout s after the churn: {what}")
    for s in soak.slots:
        if s.completions == 0:
            problems.append(f"leecher {s.index} ({s.kind}) never completed")
        if s.bad_files:
            problems.append(f"leecher {s.index} ({s.kind}): {s.bad_files} completed files differ from the original")
        if s.odd_exits:
            problems.append(f"leecher {s.index} ({s.kind}) exited oddly: {s.odd_exits[:2]}")
    if traced:
        problems.append(f"tracebacks in {', '.join(traced)}")
    if seed.proc.returncode not in (0, -signal.SIGINT) or "Traceback" in err:
        problems.append(f"seed exit {rc}, stderr: {err[-2000:]}")
    if end["fds"] > baseline["fds"]:
        problems.append(f"seed descriptors grew: {baseline['fds']} -> {end['fds']}")
    if (end["tasks"] or 0) > (baseline["tasks"] or 0):
        problems.append(f"seed asyncio tasks grew: {baseline['tasks']} -> {end['tasks']}")
    if end["rss_mib"] > baseline["rss_mib"] + rss_slack:
        problems.append(f"seed RSS grew: {baseline['rss_mib']} -> {end['rss_mib']} MiB")
    result = {
        "leechers": [
            {"index": s.index, "kind": s.kind, "completions": s.completions, "kills": s.kills,
             "bad_files": s.bad_files, "odd_exits": s.odd_exits} for s in soak.slots
        ],  # fmt: skip
        "completions": sum(s.completions for s in soak.slots),
        "kills": sum(s.kills for s in soak.slots),
        "relay": asdict(stats),
        "idle_start": idle_start,
        "baseline": baseline,
        "end": end,
        "peak_rss_mib": max((r["rss_mib"] for r in series), default=0),
        "peak_anon_mib": max((r["anon_mib"] for r in series), default=0),
        "peak_tasks": max((r["tasks"] or 0 for r in series), default=0),
        "peak_fds": max((r["fds"] for r in series), default=0),
        "seed_exit": rc,
        "problems": problems,
        "series": series,
    }
    return result


def print_result(r: dict[str, Any]) -> None:
    print("\nleecher  kind        completions  kills  bad  odd-exits")
    for s in r["leechers"]:
        print(f"{s['index']:7d}  {s['kind']:10s}  {s['completions']:11d}  {s['kills']:5d}  {s['bad_files']:3d}  "
              f"{len(s['odd_exits'])}")  # fmt: skip
    rel = r["relay"]
    print(f"\ncompleted downloads (sha256 equal): {r['completions']}, SIGKILLs: {r['kills']}, relayed connections: "
          f"{rel['connections']}, cut: {rel['cuts']} ({rel['cuts_mid_transfer']} while blocks flowed)")  # fmt: skip
    print(f"{'seed':14s} {'idle start':>10s} {'baseline':>10s} {'peak':>10s} {'end':>10s}")
    for key, peak in (("rss_mib", "peak_rss_mib"), ("anon_mib", "peak_anon_mib"), ("fds", "peak_fds"),
                      ("tasks", "peak_tasks")):  # fmt: skip
        print(f"{key:14s} {r['idle_start'][key]!s:>10s} {r['baseline'][key]!s:>10s} {r[peak]!s:>10s} "
              f"{r['end'][key]!s:>10s}")  # fmt: skip
    print("\n" + ("PASS" if not r["problems"] else "FAIL:\n  " + "\n  ".join(r["problems"])), flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="churn duration (default 10)")
    ap.add_argument("--leechers", type=int, default=20)
    ap.add_argument("--size", type=parse_size, default=parse_size("128M"), help="file size (default 128M)")
    ap.add_argument("--piece-length", type=int, default=256 * 1024)
    ap.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between SIGKILLs (default 4)")
    ap.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples (default 5)")
    ap.add_argument("--finish-timeout", type=float, default=300.0, help="seconds to complete after the churn")
    ap.add_argument("--settle", type=float, default=TRIM_INTERVAL + 5,
                    help="idle seconds before the baseline and end samples (default: one heap-trim interval + 5)")
    ap.add_argument("--rss-slack", type=float, default=32.0, help="MiB of RSS above baseline still counted as back")
    ap.add_argument("--no-libtorrent", dest="libtorrent", action="store_false", help="swarm leechers only")
    ap.add_argument("--seed-rng", type=int, default=16)
    ap.add_argument("--result", type=Path, help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if args.libtorrent:
        try:
            import libtorrent  # noqa: F401
        except ImportError:
            ap.error("libtorrent Python bindings are not installed (or pass --no-libtorrent)")
    with tempfile.TemporaryDirectory(prefix="swarm-soak-") as tmp:
        result = asyncio.run(soak_main(args, Path(tmp)))
    print_result(result)
    if args.result is not None:
        args.result.write_text(json.dumps(result, indent=1))
    return 1 if result["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
