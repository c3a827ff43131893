"""The live display on a real pseudo-terminal: it draws, redraws in place, and exits cleanly."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ptyrun import run_in_pty

DRIVER = Path(__file__).with_name("pty_driver.py")


def test_live_reporter_under_a_pty() -> None:
    res = run_in_pty([sys.executable, str(DRIVER)], cols=100, rows=30, timeout=30)
    text = res.text
    assert res.returncode == 0, text[-2000:]
    assert "Traceback" not in text
    assert "pty-demo.bin" in text and "downloading" in text
    assert "↓ 9.0 MiB/s" in text and "↑ 512.0 KiB/s" in text
    assert "4.5 MiB/s" in text  # the busiest peer's row
    # Several frames were drawn, in place (cursor up + erase line), with progress moving.
    percents = {float(p) for p in re.findall(r"(\d+\.\d)%", text)}
    assert len(percents) >= 3, percents
    assert "\x1b[2K" in res.raw and re.search(r"\x1b\[\d*A", res.raw)
    # The final summary stays on screen after the live area is cleared.
    assert "pty-demo.bin: complete, 64.0 MiB/64.0 MiB" in text.strip().splitlines()[-1]
    assert "done: pty-demo.bin" in text


def test_live_mode_not_chosen_without_a_terminal() -> None:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(DRIVER.parents[2])}
    proc = subprocess.run([sys.executable, str(DRIVER)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 3 and "expected live mode" in proc.stderr
