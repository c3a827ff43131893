"""Two libtorrent sessions that find each other only through `swarm tracker`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from tests.helpers.lt import lt_session as lt_base_session
from tests.helpers.lt import make_lt_torrent
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def swarm_tracker() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", "0",
         "--interval", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("tracker listening on"), line + proc.stderr.read().decode()  # type: ignore[union-attr]
        yield int(line.rsplit(":", 1)[1])
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def lt_session(lt: Any) -> Any:
    return lt_base_session(lt, announce_to_all_tiers=True, announce_to_all_trackers=True, alert_mask=0)


def params(lt: Any, info: Any, save_path: Path) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = info
    atp.save_path = str(save_path)
    return atp


def tracker_stats(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=5) as r:
        return json.loads(r.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize("scheme", ["http", "udp"])
def test_libtorrent_seed_and_leech_meet_through_our_tracker(
    tmp_path: Path, swarm_tracker: int, scheme: str
) -> None:
    """Over HTTP, and over UDP (BEP 15) only: the .torrent names the udp:// URL alone."""
    lt = require_libtorrent()
    seed_dir, leech_dir = tmp_path / "seed", tmp_path / "leech"
    seed_dir.mkdir()
    leech_dir.mkdir()
    payload = os.urandom(3 * 1024 * 1024 + 12345)
    (seed_dir / "data.bin").write_bytes(payload)

    raw = make_lt_torrent(  # v1 only: one swarm, not two
        lt, seed_dir / "data.bin", 256 * 1024, trackers=[f"{scheme}://127.0.0.1:{swarm_tracker}/announce"]
    )
    info = lt.torrent_info(raw)

    seed_ses, leech_ses = lt_session(lt), lt_session(lt)
    seed = seed_ses.add_torrent(params(lt, info, seed_dir))
    wait_for(lambda: seed.status().is_seeding, 20, "seed to check its data")
    wait_for(lambda: tracker_stats(swarm_tracker)["seeders"] == 1, 20, "the seed's announce")

    leech = leech_ses.add_torrent(params(lt, lt.torrent_info(info), leech_dir))
    wait_for(lambda: leech.status().is_seeding, 60, "the leech to complete")
    assert (leech_dir / "data.bin").read_bytes() == payload

    # libtorrent tells the tracker it completed: one download counted, two seeders
    wait_for(
        lambda: (
            tracker_stats(swarm_tracker)["completed"] == 1
            and tracker_stats(swarm_tracker)["seeders"] == 2
        ),
        20,
        "completed to be counted",
    )
    st = tracker_stats(swarm_tracker)
    assert st["failures"] == 0 and st["swarms"] == 1
    if scheme == "udp":  # every announce came over UDP, each after a connect
        assert st["announces"] == st["udp_announces"] >= 3 and st["udp_connects"] >= 1
        assert st["udp_bad_connection_ids"] == 0
    seed_ses.pause()
    leech_ses.pause()
