"""A real `swarm get` from a real `swarm seed`, watched on a pseudo-terminal.

The file is large enough (768 MiB: 128 MiB went by at ~370 MiB/s between two
of the display's 4-per-second redraws) that the live display redraws several
times mid-download; the test reads those frames (not only the final summary)
and checks what a person would have seen: the bar and its percentage, a
download rate, and the seed's row in the peers table.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path

from ptyrun import run_in_pty

from tests.helpers.procs import start_json_seed, stop_process

MiB = 1 << 20
SIZE = 768 * MiB + 4321  # not a whole number of pieces
NET = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


def _write_payload(path: Path) -> str:
    """SIZE bytes of random data (in 8 MiB blocks); returns its sha256."""
    h = hashlib.sha256()
    with path.open("wb") as f:
        left = SIZE
        while left:
            block = os.urandom(min(left, 8 * MiB))
            h.update(block)
            f.write(block)
            left -= len(block)
    return h.hexdigest()


def frames(raw: str) -> list[str]:
    """The screens rich drew, one string each (a redraw starts by moving the cursor up)."""
    parts = re.split(r"\x1b\[\d*A", raw)
    return [ANSI.sub("", p).replace("\r", "") for p in parts]


def test_real_get_shows_progress_rate_and_peer(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    digest = _write_payload(src / "big.bin")
    seed, port, torrent = start_json_seed(src / "big.bin", tmp_path, *NET)
    dl = tmp_path / "dl"
    dl.mkdir()
    try:
        res = run_in_pty(
            [sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(dl),
             "--peer", f"127.0.0.1:{port}", *NET],
            cols=110, rows=30, cwd=tmp_path, timeout=60,
        )
    finally:
        stop_process(seed)
    text = res.text
    assert res.returncode == 0, text[-3000:]
    assert "Traceback" not in text

    # Screens drawn while the download was under way: 0 < bar percentage < 100.
    mid = []
    for screen in frames(res.raw):
        m = re.search(r"━ (\d+\.\d)%", screen)
        if m and 0.0 < float(m.group(1)) < 100.0:
            mid.append((float(m.group(1)), screen))
    assert mid, f"no mid-download frame was drawn; output:\n{text[-3000:]}"
    pct, screen = max(mid, key=lambda x: len(x[1]))
    assert "big.bin  downloading" in screen, screen
    # The rate the status line shows mid-download is a real, non-zero one.
    rate = re.search(r"↓ ([\d.]+) (KiB|MiB|GiB)/s", screen)
    assert rate and float(rate.group(1)) > 0, screen
    # The peers table: header, then the seed's row with its address, client name and encryption.
    assert re.search(r"address\s+client\s+flags\s+enc\s+down\s+up\s+have", screen), screen
    assert re.search(rf"127\.0\.0\.1:{port}\s+swarm\b", screen), screen
    # both sides prefer: an MSE handshake that selected plaintext (libtorrent's default)
    assert re.search(rf"127\.0\.0\.1:{port}\s+swarm.*\sobfs\s", screen), screen
    assert "100.0%" in screen.split(f"127.0.0.1:{port}", 1)[1].splitlines()[0], screen  # the seed has all

    # The last line left on the terminal is the summary; the file is byte-for-byte right.
    assert "big.bin: complete, 768.0 MiB/768.0 MiB" in text.strip().splitlines()[-1], text[-1500:]
    h = hashlib.sha256()
    with (dl / "big.bin").open("rb") as f:
        while block := f.read(8 * MiB):
            h.update(block)
    assert h.hexdigest() == digest
