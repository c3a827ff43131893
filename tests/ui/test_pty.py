"""The live display on a real pseudo-terminal: it draws, redraws in place, and exits cleanly."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from ptyrun import run_in_pty

from tests.helpers.procs import LOCAL_NET, start_json_seed, stop_process

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
    percents = {float(p) for p in re.findall(r"━ (\d+\.\d)%", text)}  # the bar's own figure
    assert len(percents) >= 3 and 100.0 in percents, percents
    assert "\x1b[2K" in res.raw and re.search(r"\x1b\[\d*A", res.raw)
    # The final summary stays on screen after the live area is cleared.
    assert "pty-demo.bin: complete, 64.0 MiB/64.0 MiB" in text.strip().splitlines()[-1]
    assert "done: pty-demo.bin" in text


def test_cursor_restored_when_close_is_skipped() -> None:
    res = run_in_pty([sys.executable, str(DRIVER), "--no-close"], timeout=30)
    assert res.returncode == 0, res.text[-2000:]
    assert "\x1b[?25l" in res.raw  # the display hid the cursor...
    assert res.raw.rfind("\x1b[?25h") > res.raw.rfind("\x1b[?25l")  # ...and gave it back at exit


def test_live_mode_not_chosen_without_a_terminal() -> None:
    import os
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(DRIVER.parents[2])}
    proc = subprocess.run([sys.executable, str(DRIVER)], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 3 and "expected live mode" in proc.stderr


def test_swarm_get_under_a_pty(tmp_path: Path) -> None:
    import os

    src = tmp_path / "src"
    src.mkdir()
    data = os.urandom(6 * 1024 * 1024 + 12345)
    (src / "payload.bin").write_bytes(data)
    seed, port, torrent = start_json_seed(src / "payload.bin", tmp_path, *LOCAL_NET)
    try:
        dl = tmp_path / "dl"
        dl.mkdir()
        res = run_in_pty(
            [sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(dl), "--peer", f"127.0.0.1:{port}",
             "--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd"],
            cwd=tmp_path, timeout=60,
        )
    finally:
        stop_process(seed)
    text = res.text
    assert res.returncode == 0, text[-3000:]
    assert "Traceback" not in text
    assert "payload.bin  downloading" in text  # the live header was drawn
    assert "listening on 127.0.0.1:" in text
    assert re.search(r"↓ [\d.]+ (KiB|MiB|GiB)/s", text)
    assert "\x1b[2K" in res.raw  # redrawn in place
    assert "payload.bin: complete, 6.0 MiB/6.0 MiB" in text.strip().splitlines()[-1]
    assert (dl / "payload.bin").read_bytes() == data


def test_swarm_seed_of_several_paths_under_a_pty(tmp_path: Path) -> None:
    """`swarm seed A B` on a terminal: one table (a row per torrent and totals), one
    listening line, a summary per torrent after Ctrl-C."""
    for name, size in (("one.bin", 40_000), ("two.bin", 9_000)):
        (tmp_path / name).write_bytes(b"x" * size)
    res = run_in_pty(
        [sys.executable, "-m", "swarm", "seed", "one.bin", "two.bin", *LOCAL_NET],
        cwd=tmp_path, timeout=30, until=lambda raw: "total (2 torrents)" in raw,
    )
    text = res.text
    assert res.returncode == 0 and "Traceback" not in text, text[-2000:]
    assert re.search(r"one\.bin +seeding +100\.0%", text) and re.search(r"two\.bin +seeding +100\.0%", text)
    assert text.count("listening on 127.0.0.1:") == 1
    assert "one.bin: complete" in text and "two.bin: complete" in text


def test_swarm_daemon_table_under_a_pty(tmp_path: Path) -> None:
    """`swarm daemon` on a terminal shows its torrents as one live table (here one added
    through the watch folder) and exits 0 on Ctrl-C."""
    from swarm.create import create_torrent

    (tmp_path / "w").mkdir()
    (tmp_path / "film.bin").write_bytes(b"y" * 50_000)
    (tmp_path / "w" / "film.torrent").write_bytes(create_torrent(tmp_path / "film.bin", piece_length=16384))
    res = run_in_pty(
        [sys.executable, "-m", "swarm", "daemon", "-o", str(tmp_path), "--watch", str(tmp_path / "w"),
         "--api", "127.0.0.1:0", *LOCAL_NET],
        cwd=tmp_path, timeout=30, until=lambda raw: re.search(r"film\.bin +seeding", raw) is not None,
    )
    text = res.text
    assert res.returncode == 0 and "Traceback" not in text, text[-2000:]
    assert "API and web page on http://127.0.0.1:" in text and "total (1 torrents)" in text
