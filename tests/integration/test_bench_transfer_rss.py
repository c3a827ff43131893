"""bench_transfer.py reports each client's own peak memory, not the harness's."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

MiB = 1 << 20
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_transfer.py"


def load_bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_transfer", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_rss_is_the_childs_own_not_the_harness() -> None:
    # Linux carries the parent's RSS high-water mark into a child's rusage across
    # fork+exec, so wait4's ru_maxrss of a small child started by a big harness
    # shows the harness's figure (both columns of the report were the same).
    bench = load_bench()
    ballast = bytearray(300 * MiB)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    rc, cpu, peak = bench.wait_rusage(child, 30)
    del ballast
    assert rc == 0
    assert cpu >= 0
    assert 1 * MiB < peak < 100 * MiB, f"peak RSS {peak / MiB:.0f} MiB is not the child's"
