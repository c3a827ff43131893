"""`swarm create` and symlinks (issue 16, item 12): storage opens files with O_NOFOLLOW, so a
symlinked file in a torrent could never be served and leechers stalled on it. Every symlink
under PATH is left out with a warning; PATH itself being a symlink is refused with the path
to give instead."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from swarm.core.metainfo import parse_metainfo
from swarm.create import collect_files
from swarm.errors import BadInput
from tests.helpers.procs import ENV, SWARM


def test_symlink_inside_the_tree_is_left_out(tmp_path: Path) -> None:
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_bytes(b"12345")
    (root / "inside").symlink_to(root / "sub" / "f")
    _name, files, _single, skipped = collect_files(root)
    assert [f.path for f in files] == [(b"sub", b"f")]
    assert any("inside" in s and "symlink" in s for s in skipped), skipped


def test_cli_warns_on_stderr_and_seeds_what_it_listed(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "real.bin").write_bytes(os.urandom(40_000))
    (root / "link.bin").symlink_to(root / "real.bin")
    r = subprocess.run([*SWARM, "create", "d"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "swarm: warning: skipped" in r.stderr and "link.bin" in r.stderr and "link.bin" not in r.stdout
    meta = parse_metainfo((tmp_path / "d.torrent").read_bytes())
    assert [f.path for f in meta.files] == [("d", "real.bin")]


@pytest.mark.parametrize("target", ["file", "dir"])
def test_path_itself_a_symlink_is_refused(tmp_path: Path, target: str) -> None:
    real = tmp_path / "real"
    if target == "dir":
        real.mkdir()
        (real / "f").write_bytes(b"x")
    else:
        real.write_bytes(b"x")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(BadInput, match=r"is a symlink.*" + str(real)):
        collect_files(tmp_path / "link")
