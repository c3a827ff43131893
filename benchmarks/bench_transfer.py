"""Seed -> get of one file on 127.0.0.1: swarm->swarm next to libtorrent->libtorrent.

Every side runs in its own subprocess, so CPU seconds and memory are the
process's own. Prints MiB/s (wall time of the leecher process, start-up
included, and the steady part from first connection to done), CPU seconds
per GiB of each side, the leecher's peak RSS and peak anonymous memory
(libtorrent mmaps the files, so compare RssAnon), and swarm/libtorrent ratios.

    .venv/bin/python benchmarks/bench_transfer.py            # 1 GiB
    .venv/bin/python benchmarks/bench_transfer.py --size 256M --runs 3
    .venv/bin/python benchmarks/bench_transfer.py --encryption compare   # plain vs RC4, same run

``--encryption`` sets both sides of both pairs: ``off`` plain, ``require`` MSE
with RC4 (libtorrent: ``pe_forced``, ``allowed_enc_level`` RC4), ``prefer``
each client's default (an MSE handshake, then plaintext), ``compare`` runs
``off`` and ``require`` one after the other.
"""

from __future__ import annotations

import argparse
import json
import os
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
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
GiB = 1 << 30
MiB = 1 << 20


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": GiB}
    t = text.strip().upper().rstrip("IB")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def proc_cpu(pid: int) -> float:
    """utime + stime of a live process, in seconds (children excluded)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_status(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmRSS, RssAnon, VmHWM), in bytes."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Sampler(threading.Thread):
    """Peak RssAnon of a process, sampled every 20 ms."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_anon = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            v = proc_status(self.pid, "RssAnon")
            if v == 0 and not os.path.exists(f"/proc/{self.pid}"):
                return
            self.peak_anon = max(self.peak_anon, v)
            time.sleep(0.02)


def drop_file(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def read_json_until(proc: subprocess.Popen[str], kind: str, timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"process exited before {kind!r}")
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("event") == kind:
            return ev
    raise SystemExit(f"no {kind!r} within {timeout}s")


def wait_rusage(proc: subprocess.Popen[Any], timeout: float) -> tuple[int, float, int]:
    """(exit status, CPU seconds, peak RSS bytes) of a child, reaped with wait4.

    The peak is the child's own VmHWM, read every 5 ms until it exits: wait4's
    ru_maxrss is no use here, as Linux carries the parent's high-water mark into
    the child across fork+exec, so a small child of this (large) harness showed
    the harness's figure.
    """
    deadline = time.monotonic() + timeout
    peak = 0
    while True:
        peak = max(peak, proc_status(proc.pid, "VmHWM"))
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, ru.ru_utime + ru.ru_stime, peak
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit("leecher timed out")
        time.sleep(0.005)


# --------------------------------------------------------------------- swarm

#: What LT_SETTINGS turns off in libtorrent, off in swarm too: DHT and LSD (start-up and traffic).
SWARM_OFF = ("--no-dht", "--no-lsd")


def run_swarm(data: Path, torrent: Path, out: Path, size: int, encryption: str = "prefer") -> dict[str, float]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seed = subprocess.Popen(
        [PY, "-m", "swarm", "seed", str(data), "--torrent", str(torrent),
         "--host", "127.0.0.1", "--port", "0", "--json", "--encryption", encryption, *SWARM_OFF],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=data.parent, env=env,
    )
    try:
        port = int(read_json_until(seed, "listening", 120)["port"])
        seed_cpu0 = proc_cpu(seed.pid)
        drop_file(out)
        t0 = time.monotonic()
        leech = subprocess.Popen(
            [PY, "-m", "swarm", "get", str(torrent), "-o", str(out), "--host", "127.0.0.1",
             "--port", "0", "--peer", f"127.0.0.1:{port}", "--json", "--encryption", encryption, *SWARM_OFF],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
        )
        sampler = Sampler(leech.pid)
        sampler.start()
        events: list[dict[str, Any]] = []
        assert leech.stdout is not None

        def reader() -> None:
            assert leech.stdout is not None
            for line in leech.stdout:
                try:
                    ev = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if ev.get("event") in ("peer", "done", "summary"):
                    events.append(ev)

        rt = threading.Thread(target=reader, daemon=True)
        rt.start()
        rc, cpu, maxrss = wait_rusage(leech, 600)
        wall = time.monotonic() - t0
        sampler.stop.set()
        rt.join(5)
        seed_cpu = proc_cpu(seed.pid) - seed_cpu0
    finally:
        seed.terminate()
        seed.wait(30)
    if rc != 0:
        raise SystemExit(f"swarm get exited {rc}")
    first = next((e["time"] for e in events if e["event"] == "peer"), None)
    used = {e.get("encryption") for e in events if e["event"] == "peer" and e.get("action") == "connected"}
    want = {"off": "plain", "require": "encrypted", "prefer": "obfuscated"}[encryption]
    if used != {want}:
        raise SystemExit(f"--encryption {encryption}: the connection was {used}, not {want}")
    done = next((e["time"] for e in events if e["event"] == "done"), None)
    steady = (done - first) if first is not None and done is not None else float("nan")
    return {
        "wall": wall, "steady": steady, "leech_cpu": cpu, "seed_cpu": seed_cpu,
        "maxrss": maxrss, "anon": sampler.peak_anon,
    }


# ----------------------------------------------------------------- libtorrent

LT_SETTINGS = {
    "listen_interfaces": "127.0.0.1:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "alert_mask": 0,
}


def lt_encryption(lt: Any, encryption: str) -> dict[str, int]:
    """libtorrent's settings for one of our --encryption modes (prefer: its defaults)."""
    if encryption == "off":
        off = int(lt.enc_policy.pe_disabled)
        return {"out_enc_policy": off, "in_enc_policy": off}
    if encryption == "require":
        forced = int(lt.enc_policy.pe_forced)
        return {"out_enc_policy": forced, "in_enc_policy": forced, "allowed_enc_level": int(lt.enc_level.rc4)}
    return {}


def lt_child(role: str, torrent: str, save: str, port: int, encryption: str = "prefer") -> None:
    """Runs inside a subprocess: a libtorrent seed (prints its port) or leech."""
    import libtorrent as lt

    ses = lt.session({**LT_SETTINGS, **lt_encryption(lt, encryption)})
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save
    if role == "seed":
        p.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(p)
    if role == "seed":
        while not h.status().is_seeding:
            time.sleep(0.01)
        print(json.dumps({"event": "listening", "port": ses.listen_port()}), flush=True)
        sys.stdin.read()  # until the parent closes our stdin
        return
    t0 = time.time()
    h.connect_peer(("127.0.0.1", port))
    first = None
    while True:
        st = h.status()
        if first is None and st.num_peers:
            first = time.time()
        if st.is_seeding:
            break
        time.sleep(0.005)
    print(json.dumps({"event": "done", "first": first or t0, "done": time.time()}), flush=True)


def run_libtorrent(data: Path, torrent: Path, out: Path, encryption: str = "prefer") -> dict[str, float]:
    me = str(Path(__file__).resolve())
    seed = subprocess.Popen(
        [PY, me, "--lt-child", "seed", "--lt-torrent", str(torrent), "--lt-save", str(data.parent),
         "--encryption", encryption],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        port = int(read_json_until(seed, "listening", 300)["port"])
        seed_cpu0 = proc_cpu(seed.pid)
        drop_file(out)
        t0 = time.monotonic()
        leech = subprocess.Popen(
            [PY, me, "--lt-child", "leech", "--lt-torrent", str(torrent), "--lt-save", str(out),
             "--lt-port", str(port), "--encryption", encryption],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        sampler = Sampler(leech.pid)
        sampler.start()
        rc, cpu, maxrss = wait_rusage(leech, 600)
        wall = time.monotonic() - t0
        sampler.stop.set()
        assert leech.stdout is not None
        line = leech.stdout.read().strip().splitlines()
        ev = json.loads(line[-1]) if line else {}
        seed_cpu = proc_cpu(seed.pid) - seed_cpu0
    finally:
        if seed.stdin is not None:
            seed.stdin.close()
        seed.terminate()
        seed.wait(30)
    if rc != 0:
        raise SystemExit(f"libtorrent leech exited {rc}")
    return {
        "wall": wall, "steady": ev.get("done", 0) - ev.get("first", 0), "leech_cpu": cpu,
        "seed_cpu": seed_cpu, "maxrss": maxrss, "anon": sampler.peak_anon,
    }


# ---------------------------------------------------------------------- main


def report(name: str, runs: list[dict[str, float]], size: int) -> dict[str, float]:
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    gib = size / GiB
    print(
        f"{name:<26} {size / MiB / med['wall']:8.1f} MiB/s  (steady {size / MiB / med['steady']:7.1f})"
        f"  wall {med['wall']:6.2f} s  leech {med['leech_cpu'] / gib:5.2f} CPU-s/GiB"
        f"  seed {med['seed_cpu'] / gib:5.2f} CPU-s/GiB  leech VmHWM {med['maxrss'] / MiB:6.1f} MiB"
        f"  RssAnon {med['anon'] / MiB:6.1f} MiB"
    )
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=parse_size, default=GiB, help="file size (default 1G)")
    ap.add_argument("--piece-length", type=parse_size, default=None, help="default: swarm create's choice")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--dir", help="work directory (default: a temporary one)")
    ap.add_argument("--no-libtorrent", action="store_true")
    ap.add_argument("--no-swarm", action="store_true")
    ap.add_argument(
        "--encryption", choices=["prefer", "off", "require", "compare"], default="prefer",
        help="both sides of both pairs (compare: off, then require)",
    )
    ap.add_argument("--lt-child", choices=["seed", "leech"], help=argparse.SUPPRESS)
    ap.add_argument("--lt-torrent", help=argparse.SUPPRESS)
    ap.add_argument("--lt-save", help=argparse.SUPPRESS)
    ap.add_argument("--lt-port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lt_child:
        lt_child(args.lt_child, args.lt_torrent, args.lt_save, args.lt_port, args.encryption)
        return
    sys.path.insert(0, str(ROOT))
    from swarm.create import create_torrent

    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="swarm-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    src.mkdir(exist_ok=True)
    data = src / f"bench-{args.size}.bin"
    if not data.exists() or data.stat().st_size != args.size:
        print(f"writing {args.size / MiB:.0f} MiB of random data to {data}")
        with open(data, "wb") as f:
            left = args.size
            while left:
                n = min(left, 64 * MiB)
                f.write(os.urandom(n))
                left -= n
    torrent = work / f"bench-{args.size}-{args.piece_length or 'auto'}.torrent"
    if not torrent.exists():
        torrent.write_bytes(create_torrent(data, piece_length=args.piece_length))
    out = work / "out"
    print(f"{args.size / MiB:.0f} MiB on 127.0.0.1, median of {args.runs} run(s); work dir {work}")
    modes = ["off", "require"] if args.encryption == "compare" else [args.encryption]
    try:
        for mode in modes:
            label = "" if args.encryption == "prefer" else f" [{mode}]"
            res: dict[str, dict[str, float]] = {}
            if not args.no_swarm:
                runs = [run_swarm(data, torrent, out, args.size, mode) for _ in range(args.runs)]
                res["swarm"] = report("swarm -> swarm" + label, runs, args.size)
            if not args.no_libtorrent:
                runs = [run_libtorrent(data, torrent, out, mode) for _ in range(args.runs)]
                res["lt"] = report("libtorrent -> lt" + label if label else "libtorrent -> libtorrent", runs, args.size)
            if "swarm" in res and "lt" in res:
                s, lt = res["swarm"], res["lt"]
                print(
                    f"swarm/libtorrent{label}: speed {times(lt['wall'], s['wall'])}, "
                    f"leech CPU {times(s['leech_cpu'], lt['leech_cpu'])}, "
                    f"seed CPU {times(s['seed_cpu'], lt['seed_cpu'])}, "
                    f"leech RssAnon x{s['anon'] / max(1, lt['anon']):.2f}"
                )
    finally:
        shutil.rmtree(out, ignore_errors=True)
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

def times(a: float, b: float) -> str:
    """``a`` over ``b`` as "x1.23"; a small run's CPU may round to 0 clock ticks."""
    return f"x{a / b:.2f}" if b > 0 else "x? (under a clock tick)"


if __name__ == "__main__":
    main()
