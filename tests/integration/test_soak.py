"""A short churn soak (benchmarks/soak.py): SIGKILLed and restarted leechers, cut connections.

Marked slow (excluded by default): `pytest -m slow tests/integration/test_soak.py`.
The full run (20 leechers, 10 minutes) is `benchmarks/soak.py` itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_libtorrent

SOAK = Path(__file__).resolve().parents[2] / "benchmarks" / "soak.py"


@pytest.mark.slow
@pytest.mark.interop
@pytest.mark.timeout(660)  # the run itself is bounded at 600 s; the default 120 s cannot hold a soak
def test_churn_soak_every_leecher_completes_and_the_seed_returns_to_baseline(tmp_path: Path) -> None:
    require_libtorrent()
    result_file = tmp_path / "soak.json"
    run = subprocess.run(
        [sys.executable, str(SOAK), "--minutes", "1", "--leechers", "6", "--size", "48M",
         "--kill-every", "2", "--sample-every", "3", "--finish-timeout", "180", "--result", str(result_file)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result_file.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(result_file.read_text())
    assert result["problems"] == [], run.stdout[-3000:]
    assert run.returncode == 0, run.stderr[-3000:]
    kinds = {s["kind"] for s in result["leechers"]}
    assert kinds == {"swarm", "libtorrent"}
    assert all(s["completions"] >= 1 and s["bad_files"] == 0 for s in result["leechers"])
    # The churn really happened: kills and cuts while blocks flowed.
    assert result["kills"] >= 5
    assert result["relay"]["cuts_mid_transfer"] >= 1
    assert result["end"]["fds"] <= result["baseline"]["fds"]
    assert result["end"]["tasks"] <= result["baseline"]["tasks"]
