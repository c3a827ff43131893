"""Transmission (transmission-cli 3.00) with encryption required (``-er``) against
``--encryption require``, both directions, between two network namespaces
(issue 21). The namespace set-up and helpers are those of
test_transmission_netns.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool
from test_transmission_netns import (  # the fixture is used by name
    SIZE,
    in_ns,
    listening,
    stop_all,
    transmission_config,
    two_namespaces,  # noqa: F401
    wait_for,
)

from swarm.create import create_torrent

pytestmark = [pytest.mark.interop, pytest.mark.netns]

SWARM = [sys.executable, "-m", "swarm"]
LOGS = ("transmission.log", "swarm.log", "tracker.log")


def _torrent(tmp_path: Path, addr: str) -> bytes:
    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    url = f"http://{addr}:6969/announce"
    (tmp_path / "t.torrent").write_bytes(create_torrent(src / "f.bin", trackers=[url], piece_length=65536))
    transmission_config(tmp_path / "tcfg", 51413)
    return payload


def _logs(tmp_path: Path) -> str:
    return "\n".join(
        f"--- {n}\n{(tmp_path / n).read_text(errors='replace')[-1500:]}" for n in LOGS if (tmp_path / n).exists()
    )


def _transmission(tcli: str, ns: str, tmp_path: Path, workdir: Path) -> subprocess.Popen[bytes]:
    args = [tcli, "-g", str(tmp_path / "tcfg"), "-w", str(workdir), "-er", "-M", "-B", "t.torrent"]
    return in_ns(ns, args, tmp_path, tmp_path / "transmission.log")


def test_transmission_requiring_encryption_leeches_from_swarm_require(
    tmp_path: Path, two_namespaces: tuple[str, str, str, str]  # noqa: F811
) -> None:
    tcli = require_tool("transmission-cli")
    require_tool("ss")
    ns_a, ns_b, addr_a, _ = two_namespaces
    payload = _torrent(tmp_path, addr_a)
    out = tmp_path / "out"
    out.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        tracker = [*SWARM, "tracker", "--host", addr_a, "--port", "6969"]
        procs.append(in_ns(ns_a, tracker, tmp_path, tmp_path / "tracker.log"))
        wait_for(lambda: listening(ns_a, addr_a, 6969), 15, "swarm tracker")
        seed = [*SWARM, "seed", str(tmp_path / "src" / "f.bin"), "--torrent", "t.torrent", "--host", addr_a,
                "--port", "6881", "--no-dht", "--no-lsd", "--encryption", "require", "--log-level", "INFO"]  # fmt: skip
        procs.append(in_ns(ns_a, seed, tmp_path, tmp_path / "swarm.log"))
        wait_for(lambda: listening(ns_a, addr_a, 6881), 15, "swarm seed")
        procs.append(_transmission(tcli, ns_b, tmp_path, out))
        target = out / "f.bin"

        def done() -> bool:
            for p in procs:
                assert p.poll() is None, f"{p.args[3:6]} exited early:\n{_logs(tmp_path)}"
            return target.is_file() and target.stat().st_size == SIZE and target.read_bytes() == payload

        try:
            wait_for(done, 40, "transmission-cli (-er) to download from swarm seed --encryption require")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{_logs(tmp_path)}") from None
    finally:
        stop_all(procs)
    log = (tmp_path / "swarm.log").read_text(errors="replace")
    assert "Traceback" not in log, log
    assert "plain connection refused" not in log, log  # Transmission -er never sent a plain byte


def test_swarm_require_gets_from_transmission_requiring_encryption(
    tmp_path: Path, two_namespaces: tuple[str, str, str, str]  # noqa: F811
) -> None:
    tcli = require_tool("transmission-cli")
    ns_a, ns_b, addr_a, addr_b = two_namespaces
    payload = _torrent(tmp_path, addr_a)  # nobody serves that tracker: transmission just retries
    (tmp_path / "out").mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(_transmission(tcli, ns_b, tmp_path, tmp_path / "src"))
        wait_for(lambda: listening(ns_b, "0.0.0.0", 51413) or listening(ns_b, "*", 51413), 15, "transmission")
        get = [*SWARM, "get", "t.torrent", "-o", "out", "--peer", f"{addr_b}:51413", "--host", addr_a,
               "--port", "6881", "--no-dht", "--no-lsd", "--encryption", "require", "--json"]  # fmt: skip
        proc = in_ns(ns_a, get, tmp_path, tmp_path / "swarm.log")
        procs.append(proc)
        try:
            rc = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"swarm get did not finish in 40 s:\n{_logs(tmp_path)}") from None
    finally:
        stop_all(procs)
    log = (tmp_path / "swarm.log").read_text(errors="replace")
    assert rc == 0, log
    assert '"encryption": "encrypted"' in log or '"encryption":"encrypted"' in log, log
    assert (tmp_path / "out" / "f.bin").read_bytes() == payload
