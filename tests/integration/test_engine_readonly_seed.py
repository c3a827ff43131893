"""Seeding writes nothing next to the user's data: a read-only mount can be
seeded, no .swarm/ resume directory appears beside the files, and resume data
goes to Session.state_dir when one is given."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import IN_CI

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent


def _run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


@pytest.fixture
def ro_mount(tmp_path: Path) -> Iterator[tuple[Path, bytes]]:
    """A tmpfs holding one file, remounted read-only (skipped outside CI if mount is refused)."""
    mnt = tmp_path / "ro"
    mnt.mkdir()
    r = _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt))
    if r.returncode != 0:
        if IN_CI:
            pytest.fail(f"mount refused in CI: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        payload = os.urandom(700_001)
        (mnt / "disk.iso").write_bytes(payload)
        r = _run("mount", "-o", "remount,ro", str(mnt))
        assert r.returncode == 0, r.stderr
        with pytest.raises(OSError):
            (mnt / "probe").write_bytes(b"x")
        yield mnt, payload
    finally:
        r = _run("umount", str(mnt))
        if r.returncode != 0:
            _run("umount", "-l", str(mnt))


async def test_seed_from_read_only_mount(ro_mount: tuple[Path, bytes], tmp_path: Path) -> None:
    mnt, payload = ro_mount
    data = create_torrent(mnt / "disk.iso", piece_length=32768)
    meta = parse_metainfo(data)
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, mnt, seed_only=True)
        assert seed.status().state == "seeding"
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        assert seed.status().error is None
    assert (out / "disk.iso").read_bytes() == payload
    assert sorted(p.name for p in mnt.iterdir()) == ["disk.iso"]


async def test_seed_leaves_no_resume_dir_beside_the_data(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(300_000))
    data = create_torrent(src / "f.bin", piece_length=32768)
    async with Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(data, src, seed_only=True)
        assert h.status().state == "seeding"
    assert sorted(p.name for p in src.iterdir()) == ["f.bin"]
    # with a state_dir, the seed's resume data lands there and is used next time
    state = tmp_path / "state"
    for _ in range(2):
        async with Session("127.0.0.1", 0, state_dir=state) as s:
            h = await s.add_torrent(data, src, seed_only=True)
            assert h.status().state == "seeding"
            resume = h._t.storage.resume_path
    assert sorted(p.name for p in src.iterdir()) == ["f.bin"]
    assert resume is not None and resume.parent == state and resume.is_file()
