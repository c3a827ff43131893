"""bench_v2.py runs end to end on a small file and prints every figure it promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_v2.py"


def test_bench_v2_prints_create_and_download_figures() -> None:
    r = subprocess.run(
        [sys.executable, str(BENCH), "--size", "2M", "--piece-length", "64K", "--runs", "1", "--rounds", "1"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for line in ("SHA-256", "create --v1:", "create --v2:", "create --v2 / --v1:", "get v1:", "get v2:", "get v2 / v1:"):
        assert line in r.stdout, r.stdout
