"""Resume data under ``<root>/.swarm/`` (issue 16, item 13): ``.swarm`` swapped for a symlink
between any check and the open (a local attacker winning the race) must not send the resume
file, or its temp file, outside the output directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_storage_support import MIXED, make_meta, piece

from swarm.errors import StorageError
from swarm.storage import Storage

PL = 16384


def _swap_after(real: Callable[..., Any], check: str, swarm_dir: Path, outside: Path, done: list[bool]) -> Callable[..., Any]:
    """``real`` (the last look at .swarm before opening in it: os.lstat of its path, or
    os.mkdir of the name relative to the root's fd), then replace the directory by a
    symlink to ``outside``."""

    def wrapper(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return real(path, *args, **kwargs)
        finally:
            if not done and os.fspath(path) == check:
                done.append(True)
                for entry in os.listdir(swarm_dir):
                    os.unlink(swarm_dir / entry)
                os.rmdir(swarm_dir)
                swarm_dir.symlink_to(outside, target_is_directory=True)

    return wrapper


@pytest.mark.parametrize("existing", [False, True], ids=["first-save", "later-save"])
async def test_resume_save_never_follows_a_swapped_in_symlink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    meta, stream = make_meta(MIXED, PL)
    root, outside = tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    st = Storage(meta, root)
    await st.open()
    try:
        assert await st.write_piece(0, piece(meta, stream, 0))
        if existing:
            await st.save_resume()
            assert (root / ".swarm").is_dir()
        assert await st.write_piece(1, piece(meta, stream, 1))
        done: list[bool] = []
        swarm_dir = root / ".swarm"
        for name, check in (("lstat", str(swarm_dir)), ("mkdir", ".swarm")):
            monkeypatch.setattr(os, name, _swap_after(getattr(os, name), check, swarm_dir, outside, done))
        try:
            await st.save_resume()
        except StorageError:
            pass  # refusing is right; writing through the link is not
        monkeypatch.undo()
        assert done, "the save never looked at .swarm"
        assert os.listdir(outside) == [], "resume data written through the symlink"
    finally:
        monkeypatch.undo()
        if (root / ".swarm").is_symlink():
            (root / ".swarm").unlink()
        await st.close()
