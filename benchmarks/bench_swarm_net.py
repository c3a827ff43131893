"""A tracker, a seed and N leechers on an emulated network: swarm next to libtorrent.

Every host lives in a network namespace this script makes (``swarmbench-PID-I``,
deleted on exit, Ctrl-C and errors included) with one TUN device whose egress is
shaped by ``tc tbf`` (the host's uplink). A relay process (SCHED_FIFO) reads the
packets every host sends from its TUN device, holds them for the host's one-way
delay and writes them to the destination host's TUN device: the kernel here has
no netem, so the delay is added in user space. The relay also counts every
packet (bytes per sender and receiver, per 100 ms), which is where the uplink,
peer-share and overhead figures come from. Inside the namespaces TCP is reno
with ``tcp_min_tso_segs=16`` and TUN offloads on, so one relay packet carries
many segments (field notes: about 4x fewer packets). Addresses are 10.213.0.x,
on the TUN devices inside the namespaces only: nothing is routed anywhere else.

All clients of a run start first with the network closed (the relay holds their
packets); the clock starts when all are up and the relay opens the network.
Clients alternate which goes first from run to run. Per case and client it
prints: time until all leechers are done and its ratio to the fluid bound
T_min = max(F/u_s, N*F/(u_s + N*u)); first, median and last leecher; the seed's
uplink use (over the whole transfer, and until its last data left it) and the
leechers' mean uplink use (wire bytes over tbf capacity); the peer share
(payload leechers got from leechers / all payload leechers got); the copies of
the file the seed sent; bytes sent per byte delivered (TCP payload on the wire,
retransmissions included, over N*F) and the part of it the leechers counted
as received twice or unrequested (swarm's ``wasted``, libtorrent's
``total_redundant_bytes``); CPU seconds of the seed and the leechers
over the transfer. The one-link cases also print the steady rate (10 %..90 % of
the file) and the first data, in RTTs: from the first handshake byte, and after
the handshake completed (the seed's handshake reached the leecher).

Needs root (namespaces, TUN, tc); without it, says so and exits with status 77.

    sudo .venv/bin/python benchmarks/bench_swarm_net.py --case swarm8
    sudo .venv/bin/python benchmarks/bench_swarm_net.py --case swarm24 --case link100
    sudo .venv/bin/python benchmarks/bench_swarm_net.py --case custom --leechers 3 --size 8M
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import math
import os
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ME = str(Path(__file__).resolve())
PY = sys.executable
TICK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
NS_PREFIX = "swarmbench-"
NET = "10.213.0."  # host i is NET + str(i + 1); host 0 is the tracker, 1 the seed
TRACKER_PORT = 6969
PEER_PORT = 6881
BIN = 0.1  # seconds per bin of the relay's per-host byte timeline
QUEUE_MIN = 192 * 1024  # bytes of tbf queue at least
SKIPPED = 77  # exit status when the benchmark cannot run here (not root, no TUN)


@dataclass(frozen=True)
class Case:
    name: str
    leechers: int
    rate_mbit: float  # every host's uplink
    one_way_ms: float  # every host's one-way delay (RTT = 2x)
    size: int
    piece_length: int = 256 * 1024


CASES = {
    "link40": Case("link40", 1, 200, 20, 256 * MiB),
    "link100": Case("link100", 1, 200, 50, 256 * MiB),
    "swarm8": Case("swarm8", 8, 40, 5, 64 * MiB),
    "swarm24": Case("swarm24", 24, 20, 5, 64 * MiB),
    "custom": Case("custom", 3, 20, 5, 8 * MiB),
}


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": MiB, "G": 1 << 30}
    t = text.strip().upper().rstrip("IB")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def host_ip(i: int) -> str:
    return NET + str(i + 1)


# ---------------------------------------------------------------------- relay
#
# Runs as its own process (``--relay``): it owns the TUN devices (they vanish
# when it exits) and takes one JSON command per line on stdin.

TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
IFF_TUN, IFF_NO_PI, IFF_VNET_HDR = 0x0001, 0x1000, 0x4000
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6, TUN_F_TSO_ECN = 1, 2, 4, 8
VNET = 10  # struct virtio_net_hdr in front of every packet
BULK = 1400  # a TCP payload this large is piece data, not a handshake or bitfield
TRACE_PACKETS = 40  # payload packets kept for --trace-start


def open_tun(name: str) -> int:
    """A TUN device with virtio headers and TSO, so GSO super-packets pass whole."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(
        fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI | IFF_VNET_HDR)
    )
    fcntl.ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN)
    return fd


class Relay:
    """Delays packets between hosts and counts them.

    While closed it holds the packets between peers, but lets the tracker's
    (host 0) through: the seed registers first, and each leecher knows its peers
    when the network opens, as in a swarm that already exists. (Holding the
    announces too made their order at the tracker random: a leecher that came
    first learnt of nobody and waited for its next announce, minutes away.)
    """

    def __init__(self, devs: list[str], ips: list[str], delays: list[float]) -> None:
        self.fds = [open_tun(d) for d in devs]
        self.host_of_fd = {fd: i for i, fd in enumerate(self.fds)}
        self.by_ip = {bytes(int(x) for x in ip.split(".")): i for i, ip in enumerate(ips)}
        self.delays = delays
        self.queues: list[deque[tuple[float, int, bytes]]] = [deque() for _ in devs]
        self.held: list[tuple[int, int, bytes]] = []
        self.open = False
        self.reset()

    def reset(self) -> None:
        n = len(self.fds)
        self.t_open = 0.0
        self.wire = [[0] * n for _ in range(n)]  # IP bytes, one header per TCP segment
        self.payload = [[0] * n for _ in range(n)]
        self.first_payload: dict[str, float] = {}
        self.first_bulk: dict[str, float] = {}
        self.first_head: dict[str, list[Any]] = {}  # key: [payload bytes, first bytes in hex]
        self.trace: list[tuple[float, int, int, int, str]] = []  # the first payload packets
        self.bins: list[list[int]] = [[] for _ in range(n)]
        self.packets = 0
        self.late = 0  # delivered more than 1 ms after due
        self.lateness = 0.0  # seconds after due, summed over packets
        self.write_errors = 0

    def count(self, src: int, dst: int, buf: bytes, now: float) -> None:
        ip = VNET
        ihl = (buf[ip] & 15) * 4
        length = len(buf) - VNET
        hdr, data = ihl, length - ihl
        if buf[ip + 9] == 6 and length >= ihl + 20:
            thl = (buf[ip + ihl + 12] >> 4) * 4
            hdr, data = ihl + thl, length - ihl - thl
        gso_size = int.from_bytes(buf[4:6], "little")
        segs = max(1, math.ceil(data / gso_size)) if buf[1] and gso_size else 1
        self.wire[src][dst] += length + (segs - 1) * hdr
        self.payload[src][dst] += data
        t = now - self.t_open
        b = int(t / BIN)
        row = self.bins[src]
        if len(row) <= b:
            row.extend([0] * (b + 1 - len(row)))
        row[b] += length + (segs - 1) * hdr
        if data > 0:
            key = f"{src}-{dst}"
            start = VNET + hdr
            if key not in self.first_payload:
                self.first_payload[key] = t
                self.first_head[key] = [data, buf[start : start + 24].hex()]
            if len(self.trace) < TRACE_PACKETS:
                self.trace.append((t, src, dst, data, buf[start : start + 24].hex()))
            if data >= BULK:
                self.first_bulk.setdefault(key, t)

    def receive(self, fd: int, now: float) -> None:
        src = self.host_of_fd[fd]
        while True:
            try:
                buf = os.read(fd, 70000)
            except BlockingIOError:
                return
            if len(buf) < VNET + 20 or buf[VNET] >> 4 != 4:
                continue  # IPv4 only (IPv6 is off in the namespaces)
            dst = self.by_ip.get(buf[VNET + 16 : VNET + 20])
            if dst is None or dst == src:
                continue
            if not self.open and src != 0 and dst != 0:
                self.held.append((src, dst, buf))
                continue
            if self.open:  # the tracker's traffic before that is not counted
                self.packets += 1
                self.count(src, dst, buf, now)
            self.queues[src].append((now + self.delays[src], dst, buf))

    def deliver(self, now: float) -> float | None:
        """Write every packet that is due; the time until the next one (None: none queued)."""
        wait: float | None = None
        for q in self.queues:
            while q and q[0][0] <= now:
                due, dst, buf = q.popleft()
                self.lateness += now - due
                if now - due > 0.001:
                    self.late += 1
                try:
                    os.write(self.fds[dst], buf)
                except OSError:
                    self.write_errors += 1
            if q:
                left = q[0][0] - now
                wait = left if wait is None else min(wait, left)
        return wait

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if cmd["cmd"] == "close":  # hold from now on, forget what is queued or held
            self.open = False
            self.held.clear()
            for q in self.queues:
                q.clear()
            return {"ok": True}
        if cmd["cmd"] == "open":
            self.reset()
            now = time.time()
            self.t_open, self.open = now, True
            held, self.held = self.held, []
            for src, dst, buf in held:
                self.packets += 1
                self.count(src, dst, buf, now)
                self.queues[src].append((now + self.delays[src], dst, buf))
            return {"t_open": now, "released": len(held)}
        if cmd["cmd"] == "stats":
            return {
                "t_open": self.t_open, "wire": self.wire, "payload": self.payload,
                "first_payload": self.first_payload, "first_bulk": self.first_bulk,
                "first_head": self.first_head, "trace": self.trace,
                "bins": self.bins, "packets": self.packets, "late": self.late,
                "lateness": self.lateness,
                "write_errors": self.write_errors,
            }  # fmt: skip
        return {"error": f"unknown command {cmd!r}"}


def relay_main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the harness stops it (EOF on stdin)
    cfg = json.loads(sys.stdin.readline())
    relay = Relay(cfg["devs"], cfg["ips"], cfg["delays"])
    with contextlib.suppress(OSError):  # a late packet stretches every flow's RTT
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(20))
    ep = select.epoll()
    for fd in relay.fds:
        ep.register(fd, select.EPOLLIN)
    stdin = sys.stdin.fileno()
    ep.register(stdin, select.EPOLLIN)
    print(json.dumps({"ready": True}), flush=True)
    pending = b""
    wait: float | None = None
    while True:
        events = ep.poll(-1 if wait is None else max(wait, 0.0))
        now = time.time()
        for fd, _ in events:
            if fd != stdin:
                relay.receive(fd, now)
                continue
            chunk = os.read(stdin, 65536)
            if not chunk:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                cmd = json.loads(line)
                if cmd["cmd"] == "quit":
                    return
                print(json.dumps(relay.command(cmd)), flush=True)
        wait = relay.deliver(time.time())


class RelayProcess:
    """The harness's handle on the relay process."""

    def __init__(self, devs: list[str], ips: list[str], delays: list[float]) -> None:
        self.proc = subprocess.Popen(
            [PY, ME, "--relay"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"devs": devs, "ips": ips, "delays": delays}) + "\n")
        self.proc.stdin.flush()
        if not json.loads(self.proc.stdout.readline() or "{}").get("ready"):
            raise SystemExit("the relay did not start (is /dev/net/tun usable?)")

    def send(self, obj: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the relay exited")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


# ------------------------------------------------------------------- network


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=20)


def sweep_stale_namespaces() -> None:
    """Delete namespaces left by a benchmark run that was killed (its PID is gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if not name.startswith(NS_PREFIX):
            continue
        pid = name[len(NS_PREFIX) :].split("-")[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)


class Network:
    """hosts namespaces, each with a shaped TUN device, joined by the relay."""

    def __init__(self, hosts: int, rate_mbit: float, one_way_ms: float) -> None:
        self.hosts = hosts
        self.rate_mbit = rate_mbit
        tag = str(os.getpid())
        self.ns = [f"{NS_PREFIX}{tag}-{i}" for i in range(hosts)]
        self.devs = [f"sb{int(tag) % 100000}t{i}" for i in range(hosts)]
        self.ips = [host_ip(i) for i in range(hosts)]
        self.made: list[str] = []
        self.relay: RelayProcess | None = None
        try:
            self._build(rate_mbit, one_way_ms)
        except BaseException:
            self.close()
            raise

    def _build(self, rate_mbit: float, one_way_ms: float) -> None:
        self.relay = RelayProcess(self.devs, self.ips, [one_way_ms / 1000] * self.hosts)
        rate = int(rate_mbit * 1e6)
        # A queue of one bandwidth-delay product (at least QUEUE_MIN: room for a few GSO
        # packets), and a burst that lets a 64 KiB GSO packet through whole (tbf would
        # cut it into MTU-sized packets, 16x more work for the relay).
        limit = max(QUEUE_MIN, int(rate / 8 * 2 * one_way_ms / 1000))
        burst = 96 * 1024
        for ns, dev, ip in zip(self.ns, self.devs, self.ips, strict=True):
            run("ip", "netns", "add", ns)
            self.made.append(ns)
            run("ip", "link", "set", dev, "netns", ns)
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("tc", "-n", ns, "qdisc", "add", "dev", dev, "root", "tbf",
                "rate", str(rate), "burst", str(burst), "limit", str(limit))  # fmt: skip
            for key, value in (
                ("net.ipv4.tcp_congestion_control", "reno"),
                ("net.ipv4.tcp_min_tso_segs", "16"),
                ("net.ipv6.conf.all.disable_ipv6", "1"),
            ):
                subprocess.run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"{key}={value}"],
                               capture_output=True, timeout=10)  # fmt: skip

    def qdisc_drops(self) -> int:
        """Packets the hosts' tbf queues dropped (full queue) since they were made."""
        total = 0
        for ns, dev in zip(self.made, self.devs, strict=False):
            out = subprocess.run(["tc", "-n", ns, "-s", "qdisc", "show", "dev", dev],
                                 capture_output=True, text=True, timeout=10).stdout  # fmt: skip
            words = out.replace(",", " ").split()
            if "dropped" in words:
                total += int(words[words.index("dropped") + 1])
        return total

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.made.clear()


# ------------------------------------------------------------------- clients


class Client:
    """One client process in a namespace; a thread collects its JSON events."""

    def __init__(self, argv: list[str], ns: str, log: Path) -> None:
        self.log = open(log, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv], stdout=subprocess.PIPE, stderr=self.log, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )  # fmt: skip
        self.up = threading.Event()
        self.announced = threading.Event()
        self.done_at: float | None = None
        self.done = threading.Event()
        self.wasted = 0  # payload received that was not requested or came twice, last reported
        self.cpu0 = 0.0
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = ev.get("event")
            if kind == "listening":
                self.up.set()
            elif kind == "tracker" and ev.get("action") == "ok":
                self.announced.set()
            elif kind == "done" and self.done_at is None:
                self.done_at = float(ev["time"])
                self.done.set()
            if "wasted" in ev:
                self.wasted = max(self.wasted, int(ev["wasted"]))

    def cpu(self) -> float:
        """utime + stime of the process (all its threads) so far."""
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.thread.join(5)
        self.log.close()


#: Extra arguments of swarm's seed (``--super-seed``: BEP 16 instead of the default seed).
SWARM_SEED_ARGS: list[str] = []


def swarm_argv(role: str, ip: str, torrent: Path, path: Path) -> list[str]:
    """path: the seed's data file, or a leecher's output directory."""
    # plain TCP like the libtorrent side (MSE's key exchange would add 1.5 RTT before the handshake)
    common = ["--host", ip, "--port", str(PEER_PORT), "--no-dht", "--no-lsd", "--json", "--encryption", "off"]
    if role == "seed":
        return [PY, "-m", "swarm", "seed", str(path), "--torrent", str(torrent), *common, *SWARM_SEED_ARGS]
    return [PY, "-m", "swarm", "get", str(torrent), "-o", str(path), "--seed", *common]


def lt_argv(role: str, ip: str, torrent: Path, path: Path) -> list[str]:
    save = path.parent if role == "seed" else path
    return [
        PY,
        ME,
        "--lt-child",
        role,
        "--lt-torrent",
        str(torrent),
        "--lt-save",
        str(save),
        "--lt-ip",
        ip,
    ]


def lt_child(role: str, torrent: str, save: str, ip: str) -> None:
    """Inside a namespace: a libtorrent seed or leecher that prints swarm-like JSON events.

    Settings as tests/helpers/lt.py (no DHT, LSD, UPnP, NAT-PMP) and, like swarm,
    plain TCP: no uTP, no MSE.
    """
    import libtorrent as lt

    ses = lt.session({
        "listen_interfaces": f"{ip}:{PEER_PORT}", "enable_dht": False, "enable_lsd": False,
        "enable_upnp": False, "enable_natpmp": False, "allow_multiple_connections_per_ip": True,
        "enable_outgoing_utp": False, "enable_incoming_utp": False, "out_enc_policy": 2,
        "alert_mask": 0,
    })  # fmt: skip
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(torrent)
    p.save_path = save
    if role == "seed":
        p.flags |= lt.torrent_flags.seed_mode
    h = ses.add_torrent(p)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(json.dumps({"event": "listening", "port": ses.listen_port()}), flush=True)
    done = announced = False
    reported = 0.0
    while not stop.wait(0.01):
        st = h.status()
        if time.monotonic() - reported >= 0.5:  # like swarm's progress events: the waste so far
            reported = time.monotonic()
            print(json.dumps({"event": "progress", "wasted": st.total_redundant_bytes}), flush=True)
        if not announced and st.current_tracker:
            announced = True
            print(json.dumps({"event": "tracker", "action": "ok"}), flush=True)
        if not done and st.is_seeding and role == "leech":
            done = True
            print(json.dumps({"event": "done", "time": time.time()}), flush=True)


CLIENTS = {"swarm": swarm_argv, "libtorrent": lt_argv}


# ---------------------------------------------------------------------- runs


def sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def wait_listening(ns: str, port: int, proc: Client, timeout: float = 60) -> None:
    """Until a TCP socket listens on port in ns: a seed announcing to a tracker that is
    not up yet is refused and retries 15 s later."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.proc.poll() is None:
        out = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True, text=True, timeout=10,
        ).stdout  # fmt: skip
        if out.strip():
            return
        time.sleep(0.05)  # polling a socket table: there is no event to wait on
    raise SystemExit(f"the tracker did not listen on port {port} within {timeout:.0f} s")


def wait_ready(client: str, procs: list[Client], t_start: float, run_dir: Path) -> None:
    """Until every process listens and has had its tracker's answer (120 s at most)."""
    for c in procs:
        for event in (c.up, c.announced):
            if not event.wait(max(1.0, 120 - (time.monotonic() - t_start))):
                raise SystemExit(
                    f"{client}: a client did not start or announce within 120 s (see {run_dir})"
                )


def run_client(
    client: str,
    case: Case,
    net: Network,
    work: Path,
    data: Path,
    torrent: Path,
    timeout: float,
    verify: bool,
) -> dict[str, Any]:
    """One run: tracker, seed and leechers of one client; the figures of the transfer."""
    assert net.relay is not None
    net.relay.send({"cmd": "close"})
    run_dir = work / f"run-{client}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    argv_of = CLIENTS[client]
    procs: list[Client] = []
    try:
        tracker = Client(
            [PY, "-m", "swarm", "tracker", "--host", host_ip(0), "--port", str(TRACKER_PORT), "-q"],
            net.ns[0], run_dir / "tracker.log",
        )  # fmt: skip
        procs.append(tracker)
        wait_listening(net.ns[0], TRACKER_PORT, tracker)
        t_start = time.monotonic()
        seed = Client(argv_of("seed", host_ip(1), torrent, data), net.ns[1], run_dir / "seed.log")
        procs.append(seed)
        wait_ready(client, [seed], t_start, run_dir)
        leechers = []
        for i in range(case.leechers):
            out = run_dir / f"leech{i}"
            out.mkdir()
            leechers.append(Client(argv_of("leech", host_ip(2 + i), torrent, out), net.ns[2 + i],
                                   run_dir / f"leech{i}.log"))  # fmt: skip
        procs += leechers
        t_leechers = time.monotonic()
        wait_ready(client, leechers, t_leechers, run_dir)
        startup = time.monotonic() - t_start
        if time.monotonic() - t_leechers > 8:  # swarm gives up a connection after 10 s
            print(f"  warning: the leechers took {time.monotonic() - t_leechers:.1f} s to start:"
                  " early dials may have timed out before the network opened")  # fmt: skip
        for c in [seed, *leechers]:
            c.cpu0 = c.cpu()
        t_open = float(net.relay.send({"cmd": "open"})["t_open"])
        deadline = time.monotonic() + timeout
        for c in leechers:
            if not c.done.wait(max(0.0, deadline - time.monotonic())):
                raise SystemExit(
                    f"{client}: not all leechers done within {timeout:.0f} s (logs in {run_dir})"
                )
        t_end = time.time()
        cpu_seed = seed.cpu() - seed.cpu0
        cpu_leech = [c.cpu() - c.cpu0 for c in leechers]
        stats = net.relay.send({"cmd": "stats"})
    finally:
        for c in reversed(procs):
            c.stop()
    ok = None
    if verify:
        want = sha1_file(data)
        ok = all(sha1_file(run_dir / f"leech{i}" / data.name) == want for i in range(case.leechers))
    if ok is not False:  # wrong data stays for a look
        shutil.rmtree(run_dir, ignore_errors=True)
    done = sorted(c.done_at - t_open for c in leechers if c.done_at is not None)
    return {
        "client": client,
        "done": done,
        "startup": startup,
        "t_end": t_end - t_open,
        "cpu_seed": cpu_seed,
        "cpu_leech": sum(cpu_leech),
        "wasted": sum(c.wasted for c in leechers),
        "stats": stats,
        "data_ok": ok,
    }


def figures(case: Case, r: dict[str, Any]) -> dict[str, Any]:
    """The figures of one run, from the done times and the relay's counters."""
    s = r["stats"]
    n, size = case.leechers, case.size
    cap = case.rate_mbit * 1e6 / 8  # bytes/s of IP packets through tbf
    t_min = max(size / cap, n * size / (cap + n * cap))
    seed, leech = 1, range(2, 2 + n)
    all_done = r["done"][-1]
    seed_wire = sum(s["wire"][seed][j] for j in leech)
    seed_payload = sum(s["payload"][seed][j] for j in leech)
    leech_wire = sum(s["wire"][i][j] for i in leech for j in range(len(s["wire"])) if j != 0)
    from_peers = sum(s["payload"][i][j] for i in leech for j in leech)
    sent = seed_payload + from_peers + sum(s["payload"][i][seed] for i in leech)
    bins = s["bins"][seed]
    busy_bins = [k for k, b in enumerate(bins) if b >= 0.1 * cap * BIN]
    seed_last = (busy_bins[-1] + 1) * BIN if busy_bins else all_done
    out = {
        "all_done": all_done, "t_min": t_min, "ratio": all_done / t_min,
        "first": r["done"][0], "median": statistics.median(r["done"]), "last": r["done"][-1],
        "seed_use": seed_wire / (cap * all_done),
        "seed_use_busy": sum(bins[: int(round(seed_last / BIN))]) / (cap * seed_last),
        "seed_last": seed_last,
        "leech_use": leech_wire / (n * cap * all_done),
        "peer_share": from_peers / max(1, seed_payload + from_peers),
        "seed_copies": seed_payload / size,
        "sent_per_byte": sent / (n * size),
        "wasted": r["wasted"] / (n * size),
        "cpu_seed": r["cpu_seed"], "cpu_leech": r["cpu_leech"], "startup": r["startup"],
        "late": s["late"] / max(1, s["packets"]),
        "lateness_ms": 1000 * s["lateness"] / max(1, s["packets"]),
    }  # fmt: skip
    if n == 1:  # one link: steady rate and the first data after the handshake
        total = sum(bins)
        cum, t10, t90 = 0, None, None
        for k, b in enumerate(bins):
            cum += b
            if t10 is None and cum >= 0.1 * total:
                t10 = (k + 1) * BIN
            if t90 is None and cum >= 0.9 * total:
                t90 = (k + 1) * BIN
        if t10 is not None and t90 is not None and t90 > t10:
            out["steady_use"] = 0.8 * total / (t90 - t10) / cap
            out["steady_mib"] = 0.8 * seed_payload / (t90 - t10) / MiB
        out.update(first_data_figures(
            s["first_payload"], s["first_bulk"], s["first_head"], case.one_way_ms / 1000
        ))  # fmt: skip
    return out


HANDSHAKE_HEAD = b"\x13BitTorrent protocol".hex()


def first_data_figures(
    first_payload: dict[str, float], first_bulk: dict[str, float],
    first_head: dict[str, list[Any]], one_way: float,
) -> dict[str, Any]:
    """The first piece data's arrival at the leecher (host 2; the seed is host 1), two ways.

    *From the first handshake byte*: since the first payload byte left either side.
    2 RTT is the protocol's floor there (handshake, then request, then block).
    *After the handshake completed*: since the leecher had the seed's handshake
    (the seed's first payload packet, delivered one one-way delay after the relay
    took it) and had sent its own. A client that waited for unchoke before asking
    takes 2 RTT from there (interested, unchoke; request, piece); one that asks at
    once (allowed fast, or requests queued with interested) 1 RTT.
    Relay times are the sender's (the relay takes a packet when it is sent)."""
    out: dict[str, Any] = {}
    bulk = first_bulk.get("1-2")
    seed, leech = first_payload.get("1-2"), first_payload.get("2-1")
    if bulk is None or seed is None or leech is None:
        return out
    rtt = 2 * one_way
    arrives = bulk + one_way
    out["first_data"] = arrives - min(seed, leech)
    out["first_data_rtt"] = out["first_data"] / rtt
    out["first_data_after_handshake"] = arrives - max(seed + one_way, leech)
    out["first_data_after_handshake_rtt"] = out["first_data_after_handshake"] / rtt
    size, head = first_head.get("1-2", [0, ""])
    out["seed_handshake_bytes"] = size
    out["seed_handshake_seen"] = head.startswith(HANDSHAKE_HEAD)
    return out


def print_figures(case: Case, client: str, f: dict[str, Any], data_ok: bool | None) -> None:
    print(
        f"  {client:<10} all done {f['all_done']:6.1f} s = {f['ratio']:.2f}x T_min ({f['t_min']:.1f} s)"
        f" | leechers first {f['first']:.1f} median {f['median']:.1f} last {f['last']:.1f} s"
    )
    print(
        f"  {'':<10} seed uplink {f['seed_use']:5.1%} (until its last data at {f['seed_last']:.1f} s:"
        f" {f['seed_use_busy']:5.1%}), leecher uplinks {f['leech_use']:5.1%}"
        f" | peer share {f['peer_share']:5.1%} | seed sent {f['seed_copies']:.2f} copies"
        f" | bytes sent per byte delivered {f['sent_per_byte']:.3f}"
        f" (received twice or unrequested, as the leechers count it: {f['wasted']:.2%} of the delivered bytes)"
    )
    line = (
        f"  {'':<10} CPU seed {f['cpu_seed']:.1f} s, leechers {f['cpu_leech']:.1f} s"
        f" | start-up {f['startup']:.1f} s (not timed) | relay: {f['late']:.2%} packets >1 ms late"
        f" (mean {f['lateness_ms']:.2f} ms)"
    )
    if data_ok is not None:
        line += f" | data {'ok' if data_ok else 'WRONG'}"
    print(line)
    if "steady_mib" in f:
        print(
            f"  {'':<10} steady {f['steady_mib']:.1f} MiB/s ({f['steady_use']:.1%} of the link)",
            end="",
        )
        if "first_data" in f:
            seen = "" if f["seed_handshake_seen"] else "; NOT a handshake"
            print(
                f" | first data {f['first_data']:.3f} s ({f['first_data_rtt']:.2f} RTT) from the first"
                f" handshake byte, {f['first_data_after_handshake']:.3f} s"
                f" ({f['first_data_after_handshake_rtt']:.2f} RTT) after the handshake completed"
                f" (the seed's first packet, {f['seed_handshake_bytes']} B{seen}, at the leecher)"
            )
        else:
            print()
    sys.stdout.flush()


def print_trace(trace: list[Any], one_way_ms: float) -> None:
    """The first payload packets as the relay took them (sender's time), in RTTs
    from the first one: what went when in the first round trips."""
    t0 = trace[0][0] if trace else 0.0
    for t, src, dst, n, head in trace:
        print(f"    {1000 * (t - t0):8.2f} ms {(t - t0) / (2 * one_way_ms / 1000):5.2f} RTT"
              f"  {src}->{dst} {n:6d} B  {head}")  # fmt: skip


def run_case(
    case: Case, clients: list[str], runs: int, work: Path, verify: bool, order_seed: int,
    trace: bool = False,
) -> bool:
    """All runs of one case on one network; False when some leecher got wrong data."""
    print(
        f"== {case.name}: 1 seed + {case.leechers} leecher(s), {case.size / MiB:.0f} MiB,"
        f" {case.piece_length // 1024} KiB pieces, {case.rate_mbit:g} Mbit/s uplinks,"
        f" {case.one_way_ms:g} ms one-way ({2 * case.one_way_ms:g} ms RTT); load {os.getloadavg()[0]:.1f}"
    )
    sys.path.insert(0, str(ROOT))
    from swarm.create import create_torrent

    src = work / f"src-{case.name}"
    src.mkdir(exist_ok=True)
    data = src / f"data-{case.size}.bin"
    if not data.exists() or data.stat().st_size != case.size:
        with open(data, "wb") as f:
            left = case.size
            while left:
                n = min(left, 64 * MiB)
                f.write(os.urandom(n))
                left -= n
    torrent = work / f"{case.name}.torrent"
    torrent.write_bytes(create_torrent(
        data, piece_length=case.piece_length, trackers=[f"http://{host_ip(0)}:{TRACKER_PORT}/announce"],
    ))  # fmt: skip
    cap = case.rate_mbit * 1e6 / 8
    t_min = max(case.size / cap, case.leechers * case.size / (cap + case.leechers * cap))
    timeout = 10 * t_min + 120
    all_ok = True
    net = Network(2 + case.leechers, case.rate_mbit, case.one_way_ms)
    try:
        for k in range(runs):
            order = clients if (k + order_seed) % 2 == 0 else clients[::-1]
            for client in order:
                r = run_client(client, case, net, work, data, torrent, timeout, verify)
                print_figures(case, client, figures(case, r), r["data_ok"])
                if trace:
                    print_trace(r["stats"]["trace"], case.one_way_ms)
                all_ok = all_ok and r["data_ok"] is not False
        drops = net.qdisc_drops()
        print(
            f"  (tbf queues dropped {drops} packets in this case's runs; load {os.getloadavg()[0]:.1f})"
        )
    finally:
        net.close()
    return all_ok


def interrupt(signum: int, frame: Any) -> None:
    """SIGTERM cleans up like Ctrl-C: namespaces and processes go."""
    raise KeyboardInterrupt


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--case",
        action="append",
        choices=sorted(CASES),
        help="repeatable (default: swarm8); custom is 3 leechers, 8 MiB unless overridden",
    )
    ap.add_argument("--leechers", type=int, help="override the case's number of leechers")
    ap.add_argument("--size", type=parse_size, help="override the case's file size (e.g. 8M)")
    ap.add_argument("--rate-mbit", type=float, help="override the uplink rate")
    ap.add_argument("--one-way-ms", type=float, help="override the one-way delay")
    ap.add_argument(
        "--clients", default="swarm,libtorrent", help="comma-separated: swarm,libtorrent"
    )
    ap.add_argument("--runs", type=int, default=1, help="runs of each client per case")
    ap.add_argument(
        "--trace-start", action="store_true", help="print the first payload packets of each run"
    )
    ap.add_argument("--super-seed", action="store_true", help="swarm's seed runs with --super-seed (BEP 16)")
    ap.add_argument("--dir", help="work directory (default: a temporary one, removed)")
    ap.add_argument("--no-verify", action="store_true", help="skip comparing each leecher's file")
    ap.add_argument("--relay", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lt-child", choices=["seed", "leech"], help=argparse.SUPPRESS)
    ap.add_argument("--lt-torrent", help=argparse.SUPPRESS)
    ap.add_argument("--lt-save", help=argparse.SUPPRESS)
    ap.add_argument("--lt-ip", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.relay:
        relay_main()
        return 0
    if args.lt_child:
        lt_child(args.lt_child, args.lt_torrent, args.lt_save, args.lt_ip)
        return 0
    if os.geteuid() != 0:
        print(
            "bench_swarm_net needs root (network namespaces, TUN devices, tc): not run",
            file=sys.stderr,
        )
        return SKIPPED
    missing = [t for t in ("ip", "tc") if shutil.which(t) is None]
    if missing or not os.path.exists("/dev/net/tun"):
        print(
            f"bench_swarm_net needs {', '.join(missing) or '/dev/net/tun'}: not run",
            file=sys.stderr,
        )
        return SKIPPED
    clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    if args.super_seed:
        SWARM_SEED_ARGS.append("--super-seed")
    if "libtorrent" in clients:
        try:
            import libtorrent  # noqa: F401
        except ImportError:
            print("libtorrent is not installed: swarm only")
            clients.remove("libtorrent")
    overrides = {
        k: v for k, v in (("leechers", args.leechers), ("size", args.size), ("rate_mbit", args.rate_mbit),
                          ("one_way_ms", args.one_way_ms)) if v is not None
    }  # fmt: skip
    cases = [replace(CASES[name], **overrides) for name in (args.case or ["swarm8"])]
    signal.signal(signal.SIGTERM, interrupt)
    sweep_stale_namespaces()
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="swarm-netbench-"))
    work.mkdir(parents=True, exist_ok=True)
    ok = True
    try:
        for k, case in enumerate(cases):
            ok = run_case(case, clients, args.runs, work, not args.no_verify, k, args.trace_start) and ok
    except KeyboardInterrupt:
        print("interrupted: namespaces and processes removed", file=sys.stderr)
        return 130
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
