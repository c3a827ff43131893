"""benchmarks/bench_swarm_net.py on a small case: everyone completes with the right data,
the figures are printed, and the namespaces it made are gone afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import IN_CI, require_libtorrent, require_tool

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_swarm_net.py"


@pytest.mark.slow
def test_small_swarm_completes_and_prints_the_figures(tmp_path: Path) -> None:
    require_tool("ip")
    require_tool("tc")
    require_libtorrent()
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("the network benchmark needs root in CI")
        pytest.skip("needs root for network namespaces")
    proc = subprocess.Popen(
        [sys.executable, str(BENCH), "--case", "custom", "--leechers", "3", "--size", "8M",
         "--dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()  # its namespaces go at the next run (it sweeps those of dead runs)
            proc.communicate(timeout=30)
    if proc.returncode == 77 and not IN_CI:
        pytest.skip(f"benchmark cannot run here: {err.strip()}")
    assert proc.returncode == 0, out + err
    assert "Traceback" not in err, err
    for client in ("swarm", "libtorrent"):
        assert f"  {client} " in out, out
    # both clients: every leecher's file compared with the seed's
    assert out.count("| data ok") == 2, out
    for figure in ("x T_min", "median", "seed uplink", "leecher uplinks", "peer share",
                   "copies", "bytes sent per byte delivered", "CPU seed"):  # fmt: skip
        assert out.count(figure) >= 2, (figure, out)
    left = subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, timeout=10
    ).stdout
    assert f"swarmbench-{proc.pid}-" not in left, left
