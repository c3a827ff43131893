"""swarm <-> libtorrent transfers on 127.0.0.1 (libtorrent's DHT/LSD/UPnP/NAT-PMP off)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from tests.helpers import procs
from tests.helpers.lt import PLAIN_TCP
from tests.helpers.lt import lt_session as lt_base_session
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def lt_session(lt: Any) -> Any:
    return lt_base_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)


def lt_add(lt: Any, ses: Any, torrent: Path, save: Path) -> Any:
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(str(torrent))
    p.save_path = str(save)
    return ses.add_torrent(p)


def make_file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(size)
    (src / "data.bin").write_bytes(payload)
    return src / "data.bin", payload


def start_seed(tmp_path: Path, path: Path) -> tuple[subprocess.Popen[str], int]:
    return procs.start_seed(tmp_path, str(path), "--host", "127.0.0.1", "--port", "0")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.terminate()
    return proc.wait(timeout=15)


def test_libtorrent_seeds_swarm_gets(tmp_path: Path) -> None:
    lt = require_libtorrent()
    path, payload = make_file(tmp_path, 3 * 1024 * 1024 + 123)
    subprocess.run(
        [*SWARM, "create", str(path), "-o", str(tmp_path / "t.torrent"), "-q"], check=True, timeout=30
    )
    ses = lt_session(lt)
    h = lt_add(lt, ses, tmp_path / "t.torrent", path.parent)
    wait_for(lambda: h.status().is_seeding, 20, "libtorrent to check its data")
    port = ses.listen_port()
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [*SWARM, "get", str(tmp_path / "t.torrent"), "-o", str(out), "--port", "0",
         "--host", "127.0.0.1", "--peer", f"127.0.0.1:{port}", "--json"],
        capture_output=True, text=True, timeout=60, env=ENV,
    )
    assert r.returncode == 0, r.stderr
    assert (out / "data.bin").read_bytes() == payload
    # libtorrent updates its counters once a second
    wait_for(lambda: h.status().total_payload_upload >= len(payload), 10, "libtorrent's upload count")


def test_swarm_seeds_libtorrent_gets(tmp_path: Path) -> None:
    lt = require_libtorrent()
    path, payload = make_file(tmp_path, 3 * 1024 * 1024 + 77)
    seed, port = start_seed(tmp_path, path)
    try:
        ses = lt_session(lt)
        out = tmp_path / "lt_out"
        out.mkdir()
        h = lt_add(lt, ses, tmp_path / "data.bin.torrent", out)
        h.connect_peer(("127.0.0.1", port))
        wait_for(lambda: h.status().is_seeding, 60, "libtorrent to finish")
        assert (out / "data.bin").read_bytes() == payload
    finally:
        assert stop(seed) == 0


def test_mixed_swarm(tmp_path: Path) -> None:
    """A swarm seed, a swarm leech and a libtorrent leech that know each other."""
    lt = require_libtorrent()
    path, payload = make_file(tmp_path, 4 * 1024 * 1024)
    seed, port = start_seed(tmp_path, path)
    try:
        ses = lt_session(lt)
        lt_out = tmp_path / "lt_out"
        lt_out.mkdir()
        h = lt_add(lt, ses, tmp_path / "data.bin.torrent", lt_out)
        h.connect_peer(("127.0.0.1", port))
        sw_out = tmp_path / "sw_out"
        sw_out.mkdir()
        r = subprocess.run(
            [*SWARM, "get", str(tmp_path / "data.bin.torrent"), "-o", str(sw_out), "--port", "0",
             "--host", "127.0.0.1", "--peer", f"127.0.0.1:{ses.listen_port()}",
             "--peer", f"127.0.0.1:{port}", "--json"],
            capture_output=True, text=True, timeout=60, env=ENV,
        )
        assert r.returncode == 0, r.stderr
        wait_for(lambda: h.status().is_seeding, 60, "libtorrent to finish")
        assert (sw_out / "data.bin").read_bytes() == payload
        assert (lt_out / "data.bin").read_bytes() == payload
        events = [json.loads(line) for line in r.stdout.splitlines()]
        assert any(e["event"] == "done" for e in events)
    finally:
        assert stop(seed) == 0


def test_swarm_gets_magnet_metadata_from_libtorrent(tmp_path: Path) -> None:
    lt = require_libtorrent()
    path, payload = make_file(tmp_path, 1024 * 1024 + 9)
    subprocess.run(
        [*SWARM, "create", str(path), "-o", str(tmp_path / "t.torrent"), "-q"], check=True, timeout=30
    )
    ses = lt_session(lt)
    h = lt_add(lt, ses, tmp_path / "t.torrent", path.parent)
    wait_for(lambda: h.status().is_seeding, 20, "libtorrent to check its data")
    info_hash = str(h.info_hash())
    magnet = f"magnet:?xt=urn:btih:{info_hash}&x.pe=127.0.0.1:{ses.listen_port()}"
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [*SWARM, "get", magnet, "-o", str(out), "--port", "0", "--host", "127.0.0.1", "--json"],
        capture_output=True, text=True, timeout=60, env=ENV,
    )
    assert r.returncode == 0, r.stderr
    assert (out / "data.bin").read_bytes() == payload
    assert (out / "data.bin.torrent").is_file()
