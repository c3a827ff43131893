"""Our on-disk layout as libtorrent sees it: what Storage writes, libtorrent verifies."""

from __future__ import annotations

import asyncio
import random
import time
import warnings
from pathlib import Path

import pytest
from conftest import require_libtorrent

from swarm.core.metainfo import parse_metainfo
from swarm.storage import Storage
from tests.helpers.lt import lt_session, make_lt_torrent


@pytest.mark.parametrize("v1_only", [True, False], ids=["v1", "hybrid-pad-files"])
async def test_libtorrent_verifies_what_we_wrote(tmp_path: Path, v1_only: bool) -> None:
    lt = require_libtorrent()
    rng = random.Random(3)
    src = tmp_path / "src"
    (src / "album" / "disc 1").mkdir(parents=True)
    sizes = {"album/a.flac": 70_001, "album/disc 1/b.flac": 33_333, "album/empty": 0, "album/c.txt": 9}
    for rel, n in sizes.items():
        (src / rel).write_bytes(rng.randbytes(n))
    raw = make_lt_torrent(lt, src / "album", 16384, v1_only=v1_only)
    meta = parse_metainfo(raw)
    assert v1_only or any(f.pad for f in meta.files)
    stream = b"".join(
        bytes(f.length) if f.pad else (src.joinpath(*f.path)).read_bytes() for f in meta.files
    )

    dest = tmp_path / "dest"
    st = Storage(meta, dest)
    await st.open()
    for i in reversed(range(meta.num_pieces)):
        start = i * meta.piece_length
        assert await st.write_piece(i, stream[start : start + meta.piece_size(i)])
    await st.close()

    ses = lt_session(lt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        h = ses.add_torrent({"ti": lt.torrent_info(raw), "save_path": str(dest)})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = h.status()
        if s.state in (lt.torrent_status.seeding, lt.torrent_status.finished) and s.progress >= 1.0:
            break
        await asyncio.sleep(0.05)  # polling libtorrent's state, with a deadline
    s = h.status()
    assert s.progress == 1.0 and s.num_pieces == meta.num_pieces, (s.state, s.progress)
    for rel in sizes:
        assert (dest / rel).read_bytes() == (src / rel).read_bytes()
