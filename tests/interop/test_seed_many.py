"""`swarm seed A B C` (issue 23): one process, one port, a row per torrent; libtorrent downloads
all three from that one port; --json says which torrent each event is about; plain lines
name the torrent."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import require_libtorrent

from tests.helpers.lt import PLAIN_TCP, lt_session
from tests.helpers.procs import ENV, SWARM, stop_process
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

QUIET = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd")


def _files(tmp_path: Path) -> dict[str, bytes]:
    src = tmp_path / "src"
    (src / "dir").mkdir(parents=True)
    payloads = {"a.bin": os.urandom(300_000), "b.bin": os.urandom(70_000)}
    for name, data in payloads.items():
        (src / name).write_bytes(data)
    payloads["dir/x.txt"] = b"x" * 5000
    (src / "dir" / "x.txt").write_bytes(payloads["dir/x.txt"])
    return payloads


def _start(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[str], list[dict[str, object]]]:
    src = tmp_path / "src"
    proc = subprocess.Popen(
        [*SWARM, "seed", str(src / "a.bin"), str(src / "b.bin"), str(src / "dir"), *QUIET, *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:  # EOF if the seed dies; pytest-timeout bounds a hang
        lines.append(line)
        if "listening" in line:
            break
    return proc, [json.loads(x) for x in lines] if "--json" in extra else [{"line": x} for x in lines]


def test_json_seed_of_three_paths(tmp_path: Path) -> None:
    lt = require_libtorrent()
    payloads = _files(tmp_path)
    proc, events = _start(tmp_path, "--json")
    try:
        added = [e for e in events if e["event"] == "added"]
        assert sorted(str(e["name"]) for e in added) == ["a.bin", "b.bin", "dir"]
        assert len({e["info_hash"] for e in added}) == 3
        listening = [e for e in events if e["event"] == "listening"]
        assert len(listening) == 1
        port = int(listening[0]["port"])  # type: ignore[call-overload]
        for name in ("a.bin", "b.bin", "dir"):
            assert (tmp_path / f"{name}.torrent").is_file()
        ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
        out = tmp_path / "out"
        out.mkdir()
        handles = []
        for name in ("a.bin", "b.bin", "dir"):
            p = lt.add_torrent_params()
            p.ti = lt.torrent_info(str(tmp_path / f"{name}.torrent"))
            p.save_path = str(out)
            h = ses.add_torrent(p)
            h.connect_peer(("127.0.0.1", port))
            handles.append(h)
        wait_for(lambda: all(h.status().is_seeding for h in handles), 60, "libtorrent to get all three")
        for name, data in payloads.items():
            assert (out / name).read_bytes() == data
        # progress events of every torrent, each naming its own info_hash
        assert proc.stdout is not None
        seen: set[object] = set()
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            ev = json.loads(proc.stdout.readline())
            if ev["event"] == "progress":
                seen.add(ev["info_hash"])
        assert seen == {e["info_hash"] for e in added}
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert proc.returncode == 0


def test_plain_lines_name_each_torrent(tmp_path: Path) -> None:
    _files(tmp_path)
    proc, lines = _start(tmp_path)
    stop_process(proc)  # type: ignore[arg-type]
    text = "".join(str(x["line"]) for x in lines)
    for name in ("a.bin", "b.bin", "dir"):
        assert name in text
    assert text.count("listening on 127.0.0.1:") == 1
    assert proc.returncode == 0


def test_torrent_option_needs_a_single_path(tmp_path: Path) -> None:
    _files(tmp_path)
    src = tmp_path / "src"
    r = subprocess.run(
        [*SWARM, "seed", str(src / "a.bin"), str(src / "b.bin"), "--torrent", "x.torrent", *QUIET],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=ENV,
    )
    assert r.returncode == 2 and "--torrent" in r.stderr


def test_the_same_path_twice_is_bad_usage(tmp_path: Path) -> None:
    _files(tmp_path)
    src = tmp_path / "src"
    r = subprocess.run(
        [*SWARM, "seed", str(src / "a.bin"), str(src / "dir" / ".." / "a.bin"), *QUIET],
        cwd=tmp_path, capture_output=True, text=True, timeout=30, env=ENV,
    )
    assert r.returncode == 2 and "twice" in r.stderr
    assert not (tmp_path / "a.bin.torrent").exists()  # refused before anything was written
