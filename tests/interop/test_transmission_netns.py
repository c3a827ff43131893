"""Interop with Transmission (transmission-cli 3.00) between two network namespaces.

transmission-cli drops peers on 127.0.0.0/8, so the test makes two namespaces
joined by a veth pair (10.78.x.1 and 10.78.x.2, addresses that exist only
there). Namespace A runs `swarm tracker` and swarm; namespace B runs
transmission-cli with DHT, LPD, PEX, uTP and port mapping off, encryption
"tolerated" (encryption required: test_transmission_encryption_netns.py). transmission-cli cannot be given a peer
directly and never exits on its own: both sides meet through the tracker
named in the .torrent, and the test polls the downloaded file.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import require_tool

from swarm.create import create_torrent
from tests.helpers import netns

pytestmark = [pytest.mark.interop, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
SIZE = 2 * 1024 * 1024 + 777
_counter = iter(range(1000))


@pytest.fixture
def two_namespaces() -> Iterator[tuple[str, str, str, str]]:
    """(ns_a, ns_b, addr_a, addr_b): two namespaces joined by a veth pair, lo up in each."""
    n = next(_counter)
    subnet = 10 + (os.getpid() + n) % 200
    addr_a, addr_b = f"10.78.{subnet}.1", f"10.78.{subnet}.2"
    with netns.two_namespaces("tr", "st", (addr_a, addr_b)) as pair:
        yield pair.ns_a, pair.ns_b, addr_a, addr_b


def in_ns(ns: str, args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as f:
        return subprocess.Popen(
            ["ip", "netns", "exec", ns, *args], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT
        )


def wait_for(cond, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def listening(ns: str, addr: str, port: int) -> bool:
    r = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hltn", f"src {addr}:{port}"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    return bool(r.stdout.strip())


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)


def transmission_config(cfg: Path, port: int) -> None:
    cfg.mkdir()
    settings = {
        "dht-enabled": False,
        "lpd-enabled": False,
        "pex-enabled": False,
        "utp-enabled": False,
        "port-forwarding-enabled": False,
        "blocklist-enabled": False,
        "encryption": 0,
        "peer-port": port,
        "peer-port-random-on-start": False,
        "speed-limit-down-enabled": False,
        "speed-limit-up-enabled": False,
        "message-level": 2,
    }
    (cfg / "settings.json").write_text(json.dumps(settings))


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_transmission_leeches_from_swarm_seed(
    tmp_path: Path, two_namespaces: tuple[str, str, str, str], scheme: str
) -> None:
    """Through the tracker's HTTP side, and its UDP side only (BEP 15)."""
    tcli = require_tool("transmission-cli")
    require_tool("ss")
    ns_a, ns_b, addr_a, _addr_b = two_namespaces
    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    url = f"{scheme}://{addr_a}:6969/announce"
    (tmp_path / "t.torrent").write_bytes(
        create_torrent(src / "f.bin", trackers=[url], piece_length=65536)
    )
    out = tmp_path / "out"
    out.mkdir()
    transmission_config(tmp_path / "tcfg", 51413)
    swarm = [sys.executable, "-m", "swarm"]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            in_ns(
                ns_a,
                [*swarm, "tracker", "--host", addr_a, "--port", "6969"],
                tmp_path,
                tmp_path / "tracker.log",
            )
        )
        wait_for(lambda: listening(ns_a, addr_a, 6969), 15, "swarm tracker")
        seed = in_ns(
            ns_a,
            [
                *swarm,
                "seed",
                str(src / "f.bin"),
                "--torrent",
                "t.torrent",
                "--host",
                addr_a,
                "--port",
                "6881",
                "--no-dht",  # the tracker brings the peers; nothing else leaves the namespace
                "--no-lsd",
            ],
            tmp_path,
            tmp_path / "seed.log",
        )
        procs.append(seed)
        wait_for(lambda: listening(ns_a, addr_a, 6881), 15, "swarm seed")
        procs.append(
            in_ns(
                ns_b,
                [
                    tcli,
                    "-g",
                    str(tmp_path / "tcfg"),
                    "-w",
                    str(out),
                    "-et",
                    "-M",
                    "-B",
                    "t.torrent",
                ],
                tmp_path,
                tmp_path / "transmission.log",
            )
        )
        target = out / "f.bin"

        def done() -> bool:
            for p in procs:
                assert p.poll() is None, f"{p.args[3:6]} exited early: " + "".join(
                    f.read_text(errors="replace")[-1500:]
                    for f in (tmp_path / "transmission.log", tmp_path / "seed.log")
                )
            return (
                target.is_file()
                and target.stat().st_size == SIZE
                and target.read_bytes() == payload
            )

        try:
            wait_for(done, 25, "transmission-cli to download from swarm seed")
        except AssertionError as exc:
            logs = {
                n: (tmp_path / n).read_text(errors="replace")[-1500:]
                for n in ("transmission.log", "seed.log", "tracker.log")
            }
            raise AssertionError(f"{exc}\n{logs}") from None
    finally:
        stop_all(procs)
    seed_log = (tmp_path / "seed.log").read_text(errors="replace")
    assert "Traceback" not in seed_log, seed_log
    assert seed.returncode == 0, seed_log


def test_swarm_get_from_transmission_seed(
    tmp_path: Path, two_namespaces: tuple[str, str, str, str]
) -> None:
    """transmission-cli seeds a finished file (it verifies it on start); `swarm get --peer` fetches it."""
    tcli = require_tool("transmission-cli")
    ns_a, ns_b, addr_a, addr_b = two_namespaces
    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    url = f"http://{addr_a}:6969/announce"  # nobody listens there: transmission just retries
    (tmp_path / "t.torrent").write_bytes(
        create_torrent(src / "f.bin", trackers=[url], piece_length=65536)
    )
    (tmp_path / "out").mkdir()
    transmission_config(tmp_path / "tcfg", 51413)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            in_ns(
                ns_b,
                [
                    tcli,
                    "-g",
                    str(tmp_path / "tcfg"),
                    "-w",
                    str(src),
                    "-et",
                    "-M",
                    "-B",
                    "t.torrent",
                ],
                tmp_path,
                tmp_path / "transmission.log",
            )
        )
        wait_for(
            lambda: listening(ns_b, "0.0.0.0", 51413) or listening(ns_b, "*", 51413),
            15,
            "transmission",
        )
        get = in_ns(
            ns_a,
            [
                sys.executable,
                "-m",
                "swarm",
                "get",
                "t.torrent",
                "-o",
                "out",
                "--peer",
                f"{addr_b}:51413",
                "--host",
                addr_a,
                "--port",
                "6881",
                "--no-dht",
                "--no-lsd",
            ],
            tmp_path,
            tmp_path / "get.log",
        )
        procs.append(get)
        try:
            rc = get.wait(timeout=30)
        except subprocess.TimeoutExpired:
            logs = {
                n: (tmp_path / n).read_text(errors="replace")[-1500:]
                for n in ("transmission.log", "get.log")
            }
            raise AssertionError(
                f"swarm get did not finish from transmission in 30 s: {logs}"
            ) from None
    finally:
        stop_all(procs)
    get_log = (tmp_path / "get.log").read_text(errors="replace")
    assert rc == 0, get_log
    assert "Traceback" not in get_log, get_log
    assert (tmp_path / "out" / "f.bin").read_bytes() == payload
