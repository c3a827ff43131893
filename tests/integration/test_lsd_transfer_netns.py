"""Two `swarm` processes find each other by LSD alone and complete a transfer.

Each runs in its own network namespace, made by this test and joined by a
veth pair (10.78.0.1 / 10.78.0.2): no tracker, no --peer, --no-dht, so only
BEP 14 multicast can bring them together, and that multicast cannot leave
the two namespaces (they have no other interface). Needs root and ``ip
netns``: skipped outside CI without them, failing in CI.

Both orders: `swarm get` first (the seed's announce when its torrent is
added reaches the waiting leech, which dials it) and `swarm seed` first (the
leech's announce reaches the seed, which dials it: a seed dials LSD peers).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from swarm.create import create_torrent
from tests.helpers import netns

pytestmark = pytest.mark.netns

REPO = Path(__file__).resolve().parents[2]
A, B = "10.78.0.1", "10.78.0.2"


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str]]:
    with netns.two_namespaces("lsdt", "lt", (A, B), multicast_route=True) as pair:
        yield pair.ns_a, pair.ns_b


class Lines:
    """The stdout lines of a process, read by a thread so a wait can have a deadline."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            for line in stream:
                self.queue.put(line)
            self.queue.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def events_until(self, until: str, timeout: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no {until!r} event in {timeout}s: {out[-3:]}"
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                return out
            ev = json.loads(line)
            out.append(ev)
            if ev["event"] == until:
                return out


@pytest.mark.parametrize("first", ["get", "seed"])
def test_two_processes_find_each_other_by_lsd(
    tmp_path: Path, two_namespaces: tuple[str, str], first: str
) -> None:
    ns_a, ns_b = two_namespaces
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(1_200_000)
    (src / "data.bin").write_bytes(payload)
    tfile = tmp_path / "data.bin.torrent"
    tfile.write_bytes(create_torrent(src / "data.bin", piece_length=65536))
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
           "SWARM_STATE_DIR": str(tmp_path / "state")}
    swarm = [sys.executable, "-m", "swarm"]
    procs: list[subprocess.Popen[str]] = []

    def start(ns: str, *args: str) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, *swarm, *args, "--no-dht", "--port", "0", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
        )
        procs.append(p)
        return p

    try:
        def start_get() -> tuple[subprocess.Popen[str], Lines]:
            get = start(ns_a, "get", str(tfile), "-o", str(out), "--host", A)
            assert get.stdout is not None
            lines = Lines(get.stdout)
            lines.events_until("listening", 20)
            return get, lines

        def start_seed() -> int:
            seed = start(ns_b, "seed", str(src / "data.bin"), "--torrent", str(tfile), "--host", B)
            assert seed.stdout is not None
            seed_events = Lines(seed.stdout).events_until("listening", 20)
            return int(next(e for e in seed_events if e["event"] == "listening")["port"])

        if first == "get":
            get, get_lines = start_get()
            seed_port = start_seed()
        else:
            seed_port = start_seed()
            get, get_lines = start_get()
        events = get_lines.events_until("summary", 30)
        assert get.wait(timeout=10) == 0, get.stderr.read() if get.stderr else ""
        peers = [e for e in events if e["event"] == "peer" and e.get("action") == "connected"]
        if first == "get":
            # the seed's announce when it started reached us: we dialled it
            assert any(e.get("source") == "lsd" and e["address"] == f"{B}:{seed_port}" for e in peers), peers
        else:
            # our announce reached the seed, which dialled us
            assert any(e.get("source") == "incoming" and e["address"].startswith(f"{B}:") for e in peers), peers
        assert (out / "data.bin").read_bytes() == payload
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
