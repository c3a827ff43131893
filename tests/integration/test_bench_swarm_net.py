"""benchmarks/bench_swarm_net.py on a small case: everyone completes with the right data,
the figures are printed, and the namespaces it made are gone afterwards."""

from __future__ import annotations

import importlib.util
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


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_swarm_net", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_first_data_is_reported_from_the_first_byte_and_after_the_handshake_completed() -> None:
    # One link, 50 ms one-way (leecher 2, seed 1), the relay's times of each direction's
    # first payload packet (taken by the relay at the sender) and the first piece data:
    # the leecher's handshake leaves at 0.0, the seed's (with its bitfield) at 0.052,
    # the first block at 0.153. From the first handshake byte the block reaches the
    # leecher 0.203 s later; the seed's handshake reached the leecher at 0.102, so
    # 0.101 s (1.01 RTT) after the handshake completed.
    bench = load_bench()
    hs = (b"\x13BitTorrent protocol" + bytes(4)).hex()
    f = bench.first_data_figures(
        first_payload={"2-1": 0.0, "1-2": 0.052},
        first_bulk={"1-2": 0.153},
        first_head={"2-1": [68, hs], "1-2": [74, hs]},
        one_way=0.05,
    )
    assert f["first_data"] == pytest.approx(0.203)
    assert f["first_data_rtt"] == pytest.approx(2.03)
    assert f["first_data_after_handshake"] == pytest.approx(0.101)
    assert f["first_data_after_handshake_rtt"] == pytest.approx(1.01)
    assert f["seed_handshake_bytes"] == 74
    assert f["seed_handshake_seen"] is True
    # the seed dials (its handshake first): complete for the leecher once its own has left
    g = bench.first_data_figures(
        first_payload={"1-2": 0.0, "2-1": 0.051}, first_bulk={"1-2": 0.152},
        first_head={"1-2": [68, hs], "2-1": [68, hs]}, one_way=0.05,
    )  # fmt: skip
    assert g["first_data_after_handshake"] == pytest.approx(0.151)
    # a first seed packet that is not a handshake is flagged, not taken for one
    h = bench.first_data_figures(
        first_payload={"2-1": 0.0, "1-2": 0.052}, first_bulk={"1-2": 0.153},
        first_head={"2-1": [68, hs], "1-2": [5, "0000000101"]}, one_way=0.05,
    )  # fmt: skip
    assert h["seed_handshake_seen"] is False
