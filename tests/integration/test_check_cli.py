"""`swarm check` against torrents made by libtorrent (an independent implementation)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_libtorrent

from swarm.cli import main
from tests.helpers.lt import make_lt_torrent

ROOT = Path(__file__).resolve().parents[2]


def make_torrent(tmp_path: Path, *, v1_only: bool = True, piece: int = 16384) -> tuple[Path, Path]:
    """data/pack/{a.bin 100000, sub/b.bin 5000, c.bin 40000}; returns (torrent, data dir)."""
    lt = require_libtorrent()
    rng = random.Random(7)
    data = tmp_path / "data"
    (data / "pack" / "sub").mkdir(parents=True)
    (data / "pack" / "a.bin").write_bytes(rng.randbytes(100_000))
    (data / "pack" / "sub" / "b.bin").write_bytes(rng.randbytes(5_000))
    (data / "pack" / "c.bin").write_bytes(rng.randbytes(40_000))
    raw = make_lt_torrent(lt, data / "pack", piece, v1_only=v1_only)
    path = tmp_path / "pack.torrent"
    path.write_bytes(raw)
    return path, data


def run_check(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("v1_only", [True, False], ids=["v1", "hybrid-with-pad-files"])
def test_all_good(tmp_path: Path, capsys: pytest.CaptureFixture[str], v1_only: bool) -> None:
    torrent, data = make_torrent(tmp_path, v1_only=v1_only)
    code, out, err = run_check(capsys, str(torrent), "-o", str(data))
    assert code == 0, err
    assert ": all " in out and " pieces OK" in out
    if v1_only:
        assert "all 9 pieces OK" in out  # 145000 bytes in 16 KiB pieces
    assert sorted(p.name for p in (data / "pack").iterdir()) == ["a.bin", "c.bin", "sub"]


def test_corrupt_and_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torrent, data = make_torrent(tmp_path)
    with open(data / "pack" / "c.bin", "r+b") as fh:
        fh.seek(20_000)
        fh.write(b"\xff\x00garbage")
    (data / "pack" / "sub" / "b.bin").unlink()
    code, out, err = run_check(capsys, str(torrent), "-o", str(data))
    assert code == 1, err
    assert "pack/sub/b.bin: missing" in out
    assert "pack/c.bin: bad pieces" in out
    assert "pieces OK" in out and "bad or missing" in out
    # read-only: nothing recreated, no resume directory
    assert not (data / "pack" / "sub" / "b.bin").exists()
    assert not (data / ".swarm").exists()


def test_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm.ui.events import validate

    torrent, data = make_torrent(tmp_path)
    os.truncate(data / "pack" / "a.bin", 50_000)
    code, out, err = run_check(capsys, str(torrent), "-o", str(data), "--json")
    assert code == 1, err
    objs = [json.loads(line) for line in out.splitlines()]
    assert [o["event"] for o in objs][0] == "added"
    assert objs[-1]["event"] == "summary"
    for o in objs:
        assert validate(o) == [], o
    summary = objs[-1]
    assert summary["complete"] is False
    by_path = {f["path"]: f for f in summary["files"]}
    a = by_path["pack/a.bin"]
    assert a["status"] == "short"
    assert a["bad_pieces"]  # the pieces past 50000 bytes
    # piece 6 spans the end of a.bin and the start of c.bin: c.bin shares the blame
    assert by_path["pack/c.bin"]["status"] == "bad"
    assert by_path["pack/c.bin"]["bad_pieces"] == [[6, 6]]
    assert by_path["pack/sub/b.bin"] == {
        "path": "pack/sub/b.bin", "length": 5000, "status": "ok", "bad_pieces": []
    }
    bad = {i for lo, hi in summary["bad_pieces"] for i in range(lo, hi + 1)}
    assert summary["good_pieces"] == summary["num_pieces"] - len(bad)
    assert any(o["event"] == "progress" and o["state"] == "checking" for o in objs)


def test_quiet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torrent, data = make_torrent(tmp_path)
    code, out, err = run_check(capsys, str(torrent), "-o", str(data), "-q")
    assert (code, out, err) == (0, "", "")


@pytest.mark.parametrize(
    "make_args",
    [
        lambda t, d: ["magnet:?xt=urn:btih:" + "a" * 40, "-o", str(d)],
        lambda t, d: [str(t.parent / "nope.torrent"), "-o", str(d)],
        lambda t, d: [str(t.parent / "junk.torrent"), "-o", str(d)],
        lambda t, d: [str(d), "-o", str(d)],
        lambda t, d: [str(t), "-o", str(d / "no-such-dir")],
    ],
    ids=["magnet", "missing-torrent", "junk-torrent", "directory", "missing-dir"],
)
def test_bad_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], make_args: object) -> None:
    torrent, data = make_torrent(tmp_path)
    (tmp_path / "junk.torrent").write_bytes(b"d4:infoi3ee")
    code, out, err = run_check(capsys, *make_args(torrent, data))  # type: ignore[operator]
    assert code == 2
    assert err.startswith("swarm: error:") and "Traceback" not in err


def test_subprocess_exit_codes(tmp_path: Path) -> None:
    torrent, data = make_torrent(tmp_path)
    cmd = [sys.executable, "-m", "swarm", "check", str(torrent), "-o", str(data)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert ok.returncode == 0, ok.stderr
    (data / "pack" / "a.bin").unlink()
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert bad.returncode == 1, bad.stderr
    assert "pack/a.bin: missing" in bad.stdout
