"""Several `swarm tracker` processes on one real redis-server, end to end over HTTP:
a libtorrent seed and a `swarm get` that meet through two different trackers,
a tracker restart that loses no peers, and /stats and / showing the whole
tracker from any process. (Redis itself going away is in test_redis_store.py:
test_redis_outage_is_a_fast_failure_reason_and_recovers.)"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent
from test_redis_store import RedisServer, free_port, pid_of

from swarm.core.announce import TrackerFailure, build_announce_url, parse_announce_response
from swarm.core.bencode import decode, encode
from tests.helpers.lt import lt_session as lt_base_session
from tests.helpers.lt import make_lt_torrent
from tests.helpers.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
IH = bytes(range(20))
IH2 = bytes(range(1, 21))


class Tracker:
    """`python -m swarm tracker` in its own process on 127.0.0.1."""

    def __init__(self, store: str, port: int = 0, workers: int = 1) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", str(port),
             "--interval", "60", "--store", store, "--workers", str(workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
            env=ENV,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()  # the process prints it once it listens
        if not line.startswith("tracker listening on"):
            self.kill()
            raise AssertionError(f"tracker did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])
        self.url = f"http://127.0.0.1:{self.port}/announce"

    def get(self, path_or_url: str) -> bytes:
        url = path_or_url if "://" in path_or_url else f"http://127.0.0.1:{self.port}{path_or_url}"
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read()  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return json.loads(self.get("/stats"))  # type: ignore[no-any-return]

    def announce(
        self, n: int, ih: bytes = IH, left: int = 1000, event: str = "", numwant: int = 0
    ) -> Any:
        url = build_announce_url(
            self.url, ih, pid_of(n), 6000 + n, 0, 0, left, event, numwant=numwant
        )
        return parse_announce_response(self.get(url))

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=15)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)  # a real redis-server on a free 127.0.0.1 port
    server.start()
    yield server
    server.stop()


@pytest.fixture
def trackers() -> Iterator[Callable[..., Tracker]]:
    made: list[Tracker] = []

    def start(*args: Any, **kw: Any) -> Tracker:
        made.append(Tracker(*args, **kw))
        return made[-1]

    yield start
    for t in made:
        t.kill()


# ------------------------------------------------------------------ libtorrent and swarm get


def lt_session(lt: Any) -> Any:
    return lt_base_session(lt, alert_mask=0)


def make_torrents(lt: Any, data: Path, urls: list[str]) -> tuple[Any, list[bytes]]:
    """One info dict, one .torrent per announce URL (the info-hash covers only the info dict)."""
    meta = decode(make_lt_torrent(lt, data, 256 * 1024))
    out = []
    for url in urls:
        meta[b"announce"] = url.encode()
        meta.pop(b"announce-list", None)
        out.append(encode(meta))
    return lt.torrent_info(out[0]), out


def start_seed(lt: Any, info: Any, seed_dir: Path) -> tuple[Any, Any]:
    ses = lt_session(lt)
    atp = lt.add_torrent_params()
    atp.ti = info
    atp.save_path = str(seed_dir)
    handle = ses.add_torrent(atp)
    wait_for(lambda: handle.status().is_seeding, 20, "the libtorrent seed to check its data")
    return ses, handle


def swarm_get(torrent: Path, out: Path) -> None:
    out.mkdir(exist_ok=True)
    r = subprocess.run(
        [sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(out), "--host", "127.0.0.1",
         "--port", "0", "--no-dht", "--no-lsd", "-q"],
        cwd=ROOT, env=ENV, capture_output=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()[-2000:]


@pytest.mark.interop
@pytest.mark.parametrize("second", [1, 2], ids=["second-tracker", "second-tracker-2-workers"])
def test_libtorrent_through_one_tracker_swarm_get_through_another(
    tmp_path: Path, redis_server: RedisServer, trackers: Callable[..., Tracker], second: int
) -> None:
    lt = require_libtorrent()
    t1 = trackers(redis_server.url)
    t2 = trackers(redis_server.url, workers=second)
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    payload = os.urandom(4 * 1024 * 1024 + 4321)
    (seed_dir / "data.bin").write_bytes(payload)
    info, (via_t1, via_t2) = make_torrents(lt, seed_dir / "data.bin", [t1.url, t2.url])
    (tmp_path / "t2.torrent").write_bytes(via_t2)
    assert decode(via_t2)[b"announce"] == t2.url.encode()

    ses, _ = start_seed(lt, info, seed_dir)
    try:
        # the seed announced to t1 only; t2's figures come from the shared Redis
        wait_for(lambda: t2.stats()["seeders"] == 1, 20, "the seed to show in t2's /stats")
        assert t1.stats()["announces"] >= 1
        swarm_get(tmp_path / "t2.torrent", leech_dir)
        assert (leech_dir / "data.bin").read_bytes() == payload
        # swarm get announced to t2 only (started, completed); t1 sees it too
        wait_for(lambda: t1.stats()["completed"] == 1, 10, "the completion in t1's /stats")
    finally:
        ses.pause()
    assert t1.terminate() == 0 and t2.terminate() == 0


@pytest.mark.interop
def test_tracker_restart_mid_swarm_loses_no_peers(
    tmp_path: Path, redis_server: RedisServer, trackers: Callable[..., Tracker]
) -> None:
    lt = require_libtorrent()
    port = free_port()
    t = trackers(redis_server.url, port=port)
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 99)
    (seed_dir / "data.bin").write_bytes(payload)
    info, (torrent,) = make_torrents(lt, seed_dir / "data.bin", [t.url])
    (tmp_path / "x.torrent").write_bytes(torrent)
    ih = bytes(info.info_hash().to_bytes())

    ses, seed = start_seed(lt, info, seed_dir)
    try:
        lt_port = ses.listen_port()
        for n in range(1, 11):  # ten more live peers, leeching
            t.announce(n, ih=ih)
        wait_for(lambda: t.stats()["peers"] == 11, 20, "the seed's announce")
        before = t.stats()
        assert t.terminate() == 0

        t = trackers(redis_server.url, port=port)  # a new process, same port, same Redis
        assert t.stats()["announces"] == 0
        files = decode(t.get(f"/scrape?info_hash={''.join(f'%{b:02x}' for b in ih)}"))[b"files"]
        assert files[ih][b"complete"] == 1 and files[ih][b"incomplete"] == 10
        after = t.stats()
        for k in ("swarms", "peers", "seeders", "leechers"):
            assert after[k] == before[k], (k, before, after)
        seen = set(t.announce(50, ih=ih, numwant=50).peers)
        assert seen == {("127.0.0.1", lt_port)} | {("127.0.0.1", 6000 + n) for n in range(1, 11)}

        for n in [*range(1, 11), 50]:  # they leave; nobody is listening on their ports
            t.announce(n, ih=ih, event="stopped")
        swarm_get(tmp_path / "x.torrent", leech_dir)  # finds the seed through the new tracker
        assert (leech_dir / "data.bin").read_bytes() == payload
        assert t.stats()["completed"] == 1
    finally:
        ses.pause()


# ------------------------------------------------------------------ the status page


def test_stats_and_status_page_show_every_process(
    redis_server: RedisServer, trackers: Callable[..., Tracker]
) -> None:
    t1, t2 = trackers(redis_server.url), trackers(redis_server.url)
    t1.announce(1, left=0)
    t1.announce(2, left=0)
    for n in (3, 4, 5):
        t1.announce(n)
    t1.announce(6, ih=IH2)
    t1.announce(5, left=0, event="completed")
    want = {"swarms": 2, "peers": 6, "seeders": 3, "leechers": 3, "completed": 1}
    for t in (t1, t2):
        st = t.stats()
        assert {k: st[k] for k in want} == want, st
    assert t2.stats()["announces"] == 0  # request counters stay per process (labelled by pid)
    page = t2.get("/").decode()
    assert IH.hex() in page and IH2.hex() in page and "2 swarms" in page
    whole, _, this = page.partition("this process")
    assert "whole tracker: swarms: 2 &middot; peers: 6 &middot; seeders: 3" in whole
    summary = whole[whole.index("whole tracker:") :].split("</p>", 1)[0]
    assert "leechers: 3" in summary and "announces" not in summary  # the chart above is this process's
    assert f"(pid {t2.proc.pid}): uptime" in this and "announces: 0 " in this
    assert t1.terminate() == 0 and t2.terminate() == 0


# ------------------------------------------------------------------ Redis killed mid-run


def test_redis_killed_then_restarted_under_a_tracker_process(
    redis_server: RedisServer, trackers: Callable[..., Tracker]
) -> None:
    """SIGKILL, not a clean shutdown: every path answers a clear failure (no hang, no 500)
    while Redis is gone, and normal answers come back by themselves."""
    t = trackers(redis_server.url)
    t.announce(1, left=0)
    assert redis_server.proc is not None
    redis_server.proc.kill()
    redis_server.proc.wait(timeout=5)
    redis_server.proc = None
    scrape = f"/scrape?info_hash={''.join(f'%{b:02x}' for b in IH)}"
    for _ in range(3):  # the first try and the cooling-off ones alike
        t0 = time.monotonic()
        with pytest.raises(TrackerFailure, match="tracker storage unavailable"):
            t.announce(2, numwant=5)
        assert decode(t.get(scrape)) == {b"failure reason": b"tracker storage unavailable"}
        assert t.stats()["store"] == "unavailable"
        assert b"swarm tracker" in t.get("/")
        assert time.monotonic() - t0 < 3
    redis_server.start()  # same port, empty (no persistence)
    deadline = time.monotonic() + 10
    while True:
        try:
            t.announce(1, left=0)
            break
        except TrackerFailure as exc:
            assert str(exc) == "tracker storage unavailable"
            assert time.monotonic() < deadline, "never recovered"
            time.sleep(0.05)
    assert t.announce(2, numwant=5).peers == [("127.0.0.1", 6001)]
    assert t.stats()["peers"] == 2
    assert t.terminate() == 0


# ------------------------------------------------------------------ UDP and /metrics with --workers


def udp_announce(port: int, n: int, ih: bytes = IH) -> Any:
    """A BEP 15 connect and announce from a fresh socket (so a fresh 4-tuple: the kernel
    spreads such clients over the workers)."""
    from swarm.core import announce as a

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        s.send(a.udp_connect_request(1))
        cid = a.udp_parse_connect(s.recv(2048), 1)
        s.send(a.udp_announce_request(cid, 2, ih, pid_of(n), 0, 10, 0, "", 3, 50, 6000 + n))
        return a.udp_parse_announce(s.recv(2048), 2)


def test_workers_answer_udp_and_metrics_are_the_whole_trackers(
    redis_server: RedisServer, trackers: Callable[..., Tracker]
) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    t = trackers(redis_server.url, workers=2)
    for n in range(1, 21):
        t.announce(n)  # a new connection each: SO_REUSEPORT spreads them
    for n in range(21, 41):
        assert udp_announce(t.port, n).interval == 60
    pids = {t.stats()["pid"] for _ in range(30)}
    assert len(pids) == 2, "both workers should have answered"

    def totals() -> dict[tuple[str, str], float]:
        out: dict[tuple[str, str], float] = {}
        for fam in text_string_to_metric_families(t.get("/metrics").decode()):
            for s in fam.samples:
                if s.name == "swarm_tracker_announces_total":
                    key = (s.labels["protocol"], s.labels["result"])
                    out[key] = out.get(key, 0) + s.value
                elif s.name in ("swarm_tracker_peers", "swarm_tracker_udp_connects_total"):
                    out[(s.name, "")] = s.value
        return out

    for _ in range(6):  # any worker answers with every worker's counts
        got = totals()
        assert got[("http", "ok")] == 20 and got[("udp", "ok")] == 20, got
        assert got[("swarm_tracker_udp_connects_total", "")] == 20
        assert got[("swarm_tracker_peers", "")] == 40
    assert t.terminate() == 0
