from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest
from conftest import IN_CI
from hypothesis import given
from hypothesis import settings as st_settings
from hypothesis import strategies as hst
from test_storage_support import MIXED, make_meta, piece

from swarm.core.metainfo import FileEntry, Metainfo
from swarm.errors import ProtocolError, StorageError
from swarm.storage import Storage, make_executor

PL = 16384


def file_bytes(meta: Metainfo, stream: bytes, index: int) -> bytes:
    f = meta.files[index]
    return stream[f.offset : f.end]


async def write_all(st: Storage, meta: Metainfo, stream: bytes) -> None:
    results = await asyncio.gather(
        *(st.write_piece(i, piece(meta, stream, i)) for i in range(meta.num_pieces))
    )
    assert all(results)


async def test_round_trip_multi_file(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    assert st.have.all()
    # every block read back, across file boundaries and the pad file
    for i in range(meta.num_pieces):
        size = meta.piece_size(i)
        for begin in range(0, size, 5000):
            n = min(5000, size - begin)
            got = await st.read_block(i, begin, n)
            assert got == stream[i * PL + begin : i * PL + begin + n]
    await st.close()
    for i, f in enumerate(meta.files):
        p = tmp_path.joinpath(*f.path)
        if f.pad:
            assert not p.exists()  # pad files are never written
        else:
            assert p.read_bytes() == file_bytes(meta, stream, i)


async def test_hash_failure_writes_nothing(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    bad = bytearray(piece(meta, stream, 1))
    bad[100] ^= 1
    assert await st.write_piece(1, bad) is False
    assert 1 not in st.have
    await st.close()
    a = (tmp_path / "t" / "a.bin").read_bytes()
    assert a == bytes(40_000)  # created sparse, untouched
    with pytest.raises(StorageError):
        await Storage(meta, tmp_path).write_piece(0, b"")  # not opened writable


async def test_wrong_length_and_read_bounds(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    async with Storage(meta, tmp_path) as st:
        await st.open()
        with pytest.raises(StorageError):
            await st.write_piece(0, piece(meta, stream, 0)[:-1])
        with pytest.raises(StorageError):
            await st.write_piece(meta.num_pieces, b"x")
        assert await st.write_piece(0, memoryview(piece(meta, stream, 0)))
        for args in [(0, -1, 10), (0, 0, 0), (0, PL - 5, 10), (99, 0, 1), (-1, 0, 1)]:
            with pytest.raises(ProtocolError):
                await st.read_block(*args)
        with pytest.raises(StorageError, match="not verified"):
            await st.read_block(1, 0, 10)


async def test_resume_save_load_and_touch(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    for i in (0, 2, 5):
        assert await st.write_piece(i, piece(meta, stream, i))
    await st.close()
    assert st.resume_path is not None and st.resume_path.is_file()
    assert st.resume_path.parent == (tmp_path / ".swarm").resolve()

    st2 = Storage(meta, tmp_path)
    await st2.open()
    have = await st2.load_resume()
    assert have is not None and list(have) == [0, 2, 5]
    assert list(st2.have) == [0, 2, 5]
    await st2.close()

    # someone touches a file: the resume data must no longer be trusted
    c = tmp_path / "t" / "c.bin"
    s = c.stat()
    os.utime(c, ns=(s.st_atime_ns, s.st_mtime_ns + 1_000_000))
    st3 = Storage(meta, tmp_path)
    await st3.open()
    assert await st3.load_resume() is None
    assert list(await st3.recheck()) == [0, 2, 5]
    await st3.close()


async def test_corrupt_resume_file_is_ignored(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    assert await st.write_piece(0, piece(meta, stream, 0))
    await st.close()
    assert st.resume_path is not None
    st.resume_path.write_bytes(b"d7:version")
    st2 = Storage(meta, tmp_path, state_dir=None)
    await st2.open()
    assert await st2.load_resume() is None
    await st2.close()


async def test_state_dir(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    state = tmp_path / "state"
    st = Storage(meta, tmp_path / "data", state_dir=state)
    await st.open()
    assert await st.write_piece(3, piece(meta, stream, 3))
    await st.close()
    assert (state / f"{meta.info_hash.hex()}.resume").is_file()
    assert not (tmp_path / "data" / ".swarm").exists()
    st2 = Storage(meta, tmp_path / "data", state_dir=state)
    await st2.open()
    assert list(await st2.load_resume() or []) == [3]
    await st2.close()


async def test_recheck_truncated_and_missing(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    await st.close()
    # c.bin covers stream bytes 56768..126769: truncate it to 30000 bytes
    os.truncate(tmp_path / "t" / "c.bin", 30_000)
    (tmp_path / "t" / "sub" / "b.bin").unlink()
    seen: list[tuple[int, int]] = []
    st2 = Storage(meta, tmp_path)
    await st2.open(create=False)
    assert await st2.load_resume() is None
    have = await st2.recheck(lambda d, t: seen.append((d, t)))
    bad = set(range(meta.num_pieces)) - set(have)
    # b.bin is 40000..50000 -> pieces 2, 3; c.bin valid up to 86768 -> piece 4 ok, 5.. bad
    assert bad == {2, 3, 5, 6, 7}
    assert seen and seen[-1] == (meta.num_pieces, meta.num_pieces)
    assert not (tmp_path / "t" / "sub" / "b.bin").exists()  # create=False creates nothing
    with pytest.raises(StorageError):
        await st2.write_piece(0, piece(meta, stream, 0))
    await st2.close()


async def test_crash_recovery_by_recheck(tmp_path: Path) -> None:
    """A process killed after writing without saving resume: recheck recovers the pieces."""
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    for i in (0, 1):
        assert await st.write_piece(i, piece(meta, stream, i))
    await st.save_resume()
    for i in (4, 6):
        assert await st.write_piece(i, piece(meta, stream, i))
    st._resume_path = None  # "crash": no final resume
    await st.close()
    st2 = Storage(meta, tmp_path)
    await st2.open()
    have = await st2.load_resume()
    # The stale resume may be believed only if no mtime moved (coarse clocks); it
    # must never claim more than it recorded.
    assert have is None or list(have) == [0, 1]
    assert list(await st2.recheck()) == [0, 1, 4, 6]
    await st2.close()


async def test_read_detects_changed_file(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    assert await st.verify_files_unchanged()
    a = tmp_path / "t" / "a.bin"
    with open(a, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00corrupt")
    with pytest.raises(StorageError, match="no longer matches"):
        await st.read_block(0, 0, 16)
    assert 0 not in st.have
    os.truncate(tmp_path / "t" / "c.bin", 100)
    assert not await st.verify_files_unchanged()
    with pytest.raises(StorageError):
        await st.read_block(6, 0, 16)
    await st.close()


async def test_read_hashes_only_pieces_of_files_changed_since_the_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A seed's read skips SHA-1 for files with the size and mtime of the last recheck
    (a stat instead of hashing the piece), and hashes, and refuses, a changed one."""
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    await st.close()
    seed = Storage(meta, tmp_path)
    await seed.open(create=False)
    assert list(await seed.recheck()) == list(range(meta.num_pieces))
    import swarm.storage as storage_module

    hashed: list[int] = []
    real = storage_module.piece_matches

    def counting(layout: object, checks: object, m: object, index: int, data: bytes) -> bool:
        hashed.append(index)
        return real(layout, checks, m, index, data)  # type: ignore[arg-type]

    monkeypatch.setattr(storage_module, "piece_matches", counting)
    for i in range(1, meta.num_pieces):  # piece 0 stays out of the read cache
        assert await seed.read_block(i, 0, 16) == piece(meta, stream, i)[:16]
    assert hashed == []
    a = tmp_path / "t" / "a.bin"
    with open(a, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00corrupt")
    later = os.stat(a).st_mtime_ns + 5_000_000_000  # a coarse clock may not have moved
    os.utime(a, ns=(later, later))
    with pytest.raises(StorageError, match="no longer matches"):
        await seed.read_block(0, 0, 16)
    assert hashed == [0] and 0 not in seed.have
    await seed.close()


async def test_read_cache_serves_repeat_requests(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    blocks = await asyncio.gather(*(st.read_block(2, b, 1024) for b in range(0, PL, 1024)))
    assert b"".join(blocks) == piece(meta, stream, 2)
    assert st.cache_misses == 1 and st.cache_hits == PL // 1024 - 1
    await st.close()


async def test_existing_data_not_truncated(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    a = tmp_path / "t" / "a.bin"
    a.parent.mkdir(parents=True)
    a.write_bytes(file_bytes(meta, stream, 1))
    longer = tmp_path / "t" / "c.bin"
    longer.write_bytes(file_bytes(meta, stream, 5) + b"extra")
    st = Storage(meta, tmp_path)
    await st.open()
    have = await st.recheck()
    assert a.read_bytes() == file_bytes(meta, stream, 1)
    assert longer.stat().st_size == 70_001 + 5
    # a.bin is 0..40000: pieces 0, 1 fully inside it; c.bin 56768..126769: pieces 4..6
    assert {0, 1, 4, 5, 6} <= set(have)
    await st.close()


async def test_shared_executor_and_selected_files(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    ex = make_executor(2)
    try:
        st = Storage(meta, tmp_path, wanted_files={6}, executor=ex)
        await st.open()
        assert list(st.wanted_pieces()) == [7]
        assert (tmp_path / "t" / "sub" / "deeper" / "d.bin").exists()
        assert not (tmp_path / "t" / "a.bin").exists()
        await st.close()
        assert not ex._shutdown  # type: ignore[attr-defined]
    finally:
        ex.shutdown()


# ---------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "path",
    [
        ("..", "x"), ("/abs",), ("t", "..", "..", "x"), ("a/../../x",), (), ("",), (".",),
        ("a\x00b",), ("x" * 300,),
    ],
)
async def test_hostile_paths_refused(tmp_path: Path, path: tuple[str, ...]) -> None:
    root = tmp_path / "root"
    root.mkdir()
    meta, stream = make_meta([(("ok",), 100), (path, 100)], 64)
    st = Storage(meta, root)
    with pytest.raises(StorageError):
        await st.open()
    await st.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]
    assert list(root.iterdir()) == []
    assert not Path("/abs").exists()


async def test_symlinked_dir_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "t").symlink_to(outside)
    meta, stream = make_meta([(("t", "x.bin"), 100)], 64)
    st = Storage(meta, root)
    with pytest.raises(StorageError, match="symlink"):
        await st.open()
    await st.close()
    assert list(outside.iterdir()) == []
    # read-only open: the symlinked file is not followed either (counts as missing)
    st2 = Storage(meta, root)
    await st2.open(create=False)
    assert (await st2.recheck()).count == 0
    await st2.close()


async def test_symlinked_file_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    (root / "x.bin").symlink_to(target)
    meta, stream = make_meta([(("x.bin",), 100)], 64)
    st = Storage(meta, root)
    fds_before = len(os.listdir("/proc/self/fd"))
    with pytest.raises(StorageError, match="symlink"):
        await st.open()
    assert len(os.listdir("/proc/self/fd")) <= fds_before  # nothing left open
    await st.close()
    assert target.read_bytes() == b"precious"


async def test_fifo_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "x.bin")
    meta, stream = make_meta([(("x.bin",), 100)], 64)
    st = Storage(meta, tmp_path)
    with pytest.raises(StorageError, match="regular file"):
        await asyncio.wait_for(st.open(), 10)
    await st.close()


async def test_duplicate_paths_refused(tmp_path: Path) -> None:
    meta, stream = make_meta([(("a",), 10), (("a",), 10)], 8)
    st = Storage(meta, tmp_path)
    with pytest.raises(StorageError, match="share the path"):
        await st.open()
    await st.close()


async def test_root_under_a_file(tmp_path: Path) -> None:
    """ENOTDIR fails even for root (chmod does not)."""
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, blocker / "out")
    with pytest.raises(StorageError, match="cannot create .*Not a directory"):
        await st.open()
    await st.close()
    st2 = Storage(meta, tmp_path / "missing")
    with pytest.raises(StorageError, match="missing"):
        await st2.open(create=False)
    await st2.close()
    assert not (tmp_path / "missing").exists()


async def test_disk_full(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()

    def full(fd: int, data: object, offset: int) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(StorageError, match=r"disk full writing .*a\.bin"):
        await st.write_piece(0, piece(meta, stream, 0))
    assert 0 not in st.have
    monkeypatch.undo()
    await st.close()


async def test_resume_disabled_when_torrent_claims_dot_swarm(tmp_path: Path) -> None:
    meta, stream = make_meta([((".swarm", "x"), 10)], 8)
    st = Storage(meta, tmp_path)
    await st.open()
    assert st.resume_path is None
    await st.close()


def test_bad_wanted_index(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    with pytest.raises(StorageError):
        Storage(meta, tmp_path, wanted_files={99})


def test_inconsistent_meta_refused(tmp_path: Path) -> None:
    meta, _ = make_meta(MIXED, PL)
    broken = Metainfo(
        info_hash=meta.info_hash,
        info_bytes=b"",
        name="t",
        piece_length=PL,
        pieces=meta.pieces[:-20],
        total_length=meta.total_length,
        files=meta.files,
        multi_file=True,
    )
    with pytest.raises(StorageError):
        Storage(broken, tmp_path)
    gap = Metainfo(
        info_hash=meta.info_hash,
        info_bytes=b"",
        name="t",
        piece_length=PL,
        pieces=meta.pieces,
        total_length=meta.total_length,
        files=(FileEntry(("a",), 5, 1),),
        multi_file=False,
    )
    with pytest.raises(StorageError):
        Storage(gap, tmp_path)


async def test_selection_neighbours_hold_only_shared_bytes(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    # c.bin (56768..126769) alone: pieces 3..7; piece 3 starts in b.bin, 7 ends in d.bin
    st = Storage(meta, tmp_path, wanted_files={5})
    await st.open()
    wanted = list(st.wanted_pieces())
    assert wanted == [3, 4, 5, 6, 7]
    for i in wanted:
        assert await st.write_piece(i, piece(meta, stream, i))
    await st.close()
    t = tmp_path / "t"
    assert (t / "c.bin").read_bytes() == file_bytes(meta, stream, 5)
    assert not (t / "a.bin").exists()
    b = (t / "sub" / "b.bin").read_bytes()  # the tail of b.bin that piece 3 holds
    assert len(b) == 10_000 and b[49152 - 40000 :] == file_bytes(meta, stream, 2)[49152 - 40000 :]
    st2 = Storage(meta, tmp_path, wanted_files={5})
    await st2.open()
    have = await st2.load_resume()
    assert have is not None and list(have) == wanted
    assert await st2.verify_files_unchanged()
    await st2.close()


def test_kill_9_loses_only_pieces_in_flight(tmp_path: Path) -> None:
    """A writer killed with SIGKILL: every piece it reported written is recovered."""
    import signal
    import subprocess
    import sys
    import time

    child = r'''
import asyncio, sys
sys.path[:0] = sys.argv[1:3]
from pathlib import Path
from test_storage_support import MIXED, make_meta, piece
from swarm.storage import Storage

async def main():
    meta, stream = make_meta(MIXED, 16384)
    st = Storage(meta, Path(sys.argv[3]))
    await st.open()
    for i in range(meta.num_pieces):
        assert await st.write_piece(i, piece(meta, stream, i))
        print(i, flush=True)
        if i == 2:
            await st.save_resume()
        if i == 5:
            await asyncio.sleep(60)  # parked here until killed

asyncio.run(main())
'''
    root = tmp_path / "data"
    here = str(Path(__file__).resolve().parent)
    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen(
        [sys.executable, "-c", child, here, repo, str(root)],
        stdout=subprocess.PIPE, text=True,
    )
    reported: list[int] = []
    deadline = time.monotonic() + 30
    try:
        assert proc.stdout is not None
        while len(reported) < 6 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            reported.append(int(line))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert reported == [0, 1, 2, 3, 4, 5]

    async def recover() -> list[int]:
        meta, stream = make_meta(MIXED, PL)
        st = Storage(meta, root)
        await st.open()
        have = await st.load_resume()
        # the resume saved after piece 2 may be stale, never wrong
        assert have is None or set(have) <= set(reported)
        got = list(await st.recheck())
        await st.close()
        return got

    assert asyncio.run(recover()) == reported


async def test_bep47_symlink_entries_skipped_and_executable_bit(tmp_path: Path) -> None:
    meta, stream = make_meta([(("t", "run.sh"), 300), (("t", "z.bin"), 200)], 128)
    files = (
        FileEntry(("t", "run.sh"), 300, 0, executable=True),
        FileEntry(("t", "link"), 0, 300, symlink=("..", "..", "etc")),
        FileEntry(("t", "z.bin"), 200, 300),
    )
    meta = Metainfo(
        info_hash=meta.info_hash, info_bytes=b"", name="t", piece_length=128,
        pieces=meta.pieces, total_length=500, files=files, multi_file=True,
    )
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    await st.close()
    assert not (tmp_path / "t" / "link").exists() and not (tmp_path / "t" / "link").is_symlink()
    assert (tmp_path / "t" / "run.sh").stat().st_mode & 0o111
    assert not (tmp_path / "t" / "z.bin").stat().st_mode & 0o111
    assert (tmp_path / "t" / "z.bin").read_bytes() == stream[300:]


async def test_small_fd_cache_and_fsync_of_evicted_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = [((f"f{i}",), 3000 + i) for i in range(12)]
    meta, stream = make_meta(spec, 4096)
    st = Storage(meta, tmp_path, max_open_files=2)
    await st.open()
    await write_all(st, meta, stream)
    assert len(st._fds.fds()) <= 2
    synced: list[int] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    await st.save_resume()
    assert len(synced) >= 12  # every written file, evicted or not (+ resume file and dir)
    synced.clear()
    await st.save_resume()
    assert synced == []  # nothing new: no rewrite
    await st.close()
    assert synced == []
    for i, f in enumerate(meta.files):
        assert (tmp_path / f.path[0]).read_bytes() == file_bytes(meta, stream, i)


@st_settings(max_examples=25, deadline=None)
@given(
    lengths=hst.lists(hst.integers(0, 3000), min_size=1, max_size=8).filter(lambda x: sum(x) > 0),
    pads=hst.lists(hst.booleans(), min_size=8, max_size=8),
    piece_length=hst.sampled_from([512, 1000, 1024, 4096]),
    order_seed=hst.integers(0, 2**32),
    reads=hst.lists(hst.tuples(hst.floats(0, 1), hst.floats(0, 1)), max_size=6),
)
def test_round_trip_property(
    lengths: list[int], pads: list[bool], piece_length: int, order_seed: int,
    reads: list[tuple[float, float]],
) -> None:
    """Any layout, pieces written in any order: files hold exactly the stream, blocks read back."""
    import random
    import tempfile

    spec = [((f"d{i % 3}", f"f{i}"), n, pads[i] and i % 2 == 1) for i, n in enumerate(lengths)]
    meta, stream = make_meta(spec, piece_length, seed=order_seed)  # type: ignore[arg-type]
    order = list(range(meta.num_pieces))
    random.Random(order_seed).shuffle(order)

    async def go(root: Path) -> None:
        st = Storage(meta, root)
        await st.open()
        for i in order:
            assert await st.write_piece(i, piece(meta, stream, i))
        for a, b in reads:
            index = int(a * (meta.num_pieces - 1))
            size = meta.piece_size(index)
            begin = int(b * (size - 1))
            length = max(1, (size - begin) // 2)
            start = index * piece_length + begin
            assert await st.read_block(index, begin, length) == stream[start : start + length]
        await st.close()
        for i, f in enumerate(meta.files):
            p = root.joinpath(*f.path)
            if f.pad:
                assert not p.exists()
            else:
                assert p.read_bytes() == file_bytes(meta, stream, i)
        st2 = Storage(meta, root)
        await st2.open(create=False)
        assert (await st2.recheck()).all()
        assert (await st2.load_resume()) is not None
        await st2.close()

    with tempfile.TemporaryDirectory() as d:
        asyncio.run(go(Path(d)))


async def test_recheck_in_small_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import swarm.storage as storage_mod

    monkeypatch.setattr(storage_mod, "_HASH_CHUNK", 1000)  # pieces hashed in 1000-byte reads
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    await st.close()
    with open(tmp_path / "t" / "c.bin", "r+b") as fh:
        fh.seek(98304 - 56768 + 5)  # inside piece 6
        fh.write(b"X")
    st2 = Storage(meta, tmp_path)
    await st2.open(create=False)
    have = await st2.recheck()
    assert list(have.missing()) == [6]
    await st2.close()


async def test_big_pieces_bypass_the_read_cache(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path, read_cache_bytes=PL)  # fewer than two pieces fit
    await st.open()
    await write_all(st, meta, stream)
    for _ in range(2):
        assert await st.read_block(3, 100, 5000) == stream[3 * PL + 100 : 3 * PL + 5100]
    assert st.cache_hits == st.cache_misses == 0
    os.truncate(tmp_path / "t" / "c.bin", 0)
    with pytest.raises(StorageError, match="shorter"):
        await st.read_block(5, 0, 100)
    assert 5 not in st.have
    await st.close()


@pytest.fixture
def tmpfs(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Mount small tmpfs file systems (root only; skipped where mounting is not allowed)."""
    import subprocess

    mounted: list[Path] = []

    def mount(name: str, options: str) -> Path:
        point = tmp_path / name
        point.mkdir()
        r = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)],
            capture_output=True, text=True, timeout=30,
        )
        if r.returncode != 0:
            if IN_CI:
                pytest.fail(f"cannot mount a tmpfs in CI (runs as root): {r.stderr.strip()}")
            pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], capture_output=True, timeout=30)


async def test_real_disk_full(tmpfs) -> None:  # type: ignore[no-untyped-def]
    root = tmpfs("small", "size=64k")
    meta, stream = make_meta([(("big.bin",), 200_000)], PL)
    st = Storage(meta, root)
    await st.open()  # sparse: creating a file bigger than the disk is fine
    with pytest.raises(StorageError, match=r"disk full writing .*big\.bin"):
        for i in range(meta.num_pieces):
            assert await st.write_piece(i, piece(meta, stream, i))
    assert not st.have.all()
    with pytest.raises(StorageError, match="disk full"):
        await st.close()  # the resume file does not fit either: reported, fds still closed
    assert st._fds.fds() == []


async def test_read_only_file_system(tmpfs) -> None:  # type: ignore[no-untyped-def]
    root = tmpfs("ro", "ro,size=64k")
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, root)
    with pytest.raises(StorageError, match="cannot write to .*Read-only file system"):
        await st.open()
    await st.close()
    st2 = Storage(meta, root / "sub")
    with pytest.raises(StorageError, match="cannot create .*Read-only file system"):
        await st2.open()
    await st2.close()
    st3 = Storage(meta, root)  # checking read-only data is fine
    await st3.open(create=False)
    assert (await st3.recheck()).count == 0
    await st3.close()


async def test_cancelled_requester_does_not_cancel_shared_read(tmp_path: Path) -> None:
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    await write_all(st, meta, stream)
    first = asyncio.ensure_future(st.read_block(4, 0, 100))
    second = asyncio.ensure_future(st.read_block(4, 100, 100))
    await asyncio.sleep(0)  # both are now waiting on the same load
    first.cancel()
    got = await asyncio.wait_for(second, 10)
    assert got == stream[4 * PL + 100 : 4 * PL + 200]
    assert first.cancelled()
    assert st.cache_misses == 1
    await st.close()


async def test_resume_dir_symlink_refused(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / ".swarm").symlink_to(outside)
    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, root)
    await st.open()
    assert await st.write_piece(0, piece(meta, stream, 0))
    with pytest.raises(StorageError, match="symlink"):
        await st.save_resume()
    with pytest.raises(StorageError, match="symlink"):
        await st.close()
    assert list(outside.iterdir()) == []


async def test_one_fd_many_threads(tmp_path: Path) -> None:
    """An fd cache of one under concurrent writes and reads: no fd closed while in use."""
    spec = [((f"f{i}",), 1500 + 37 * i) for i in range(10)]
    meta, stream = make_meta(spec, 1024)
    st = Storage(meta, tmp_path, max_open_files=1, read_cache_bytes=0)
    await st.open()
    await write_all(st, meta, stream)
    blocks = [(i, b) for i in range(meta.num_pieces) for b in (0, 300) if b + 200 <= meta.piece_size(i)]
    got = await asyncio.gather(*(st.read_block(i, b, 200) for i, b in blocks))
    for (i, b), data in zip(blocks, got, strict=True):
        assert data == stream[i * 1024 + b : i * 1024 + b + 200]
    assert len(st._fds.fds()) <= 1
    await st.close()


async def test_aligned_piece_buffers_are_written_direct(tmp_path: Path) -> None:
    """Page-aligned piece buffers (as the downloader allocates them) go to disk with
    O_DIRECT where the segment is aligned, buffered elsewhere; the files are right."""
    from swarm.diskio import aligned_buffer

    meta, stream = make_meta(MIXED, PL)
    st = Storage(meta, tmp_path)
    await st.open()
    direct = 0
    write = st._direct._write_direct

    def counting(fd: int, data: memoryview, offset: int) -> bool:
        nonlocal direct
        ok = write(fd, data, offset)
        direct += ok
        return ok

    st._direct._write_direct = counting  # type: ignore[method-assign]
    for i in range(meta.num_pieces):
        buf = aligned_buffer(meta.piece_size(i))
        buf[:] = piece(meta, stream, i)
        assert await st.write_piece(i, buf)
    await st.close()
    for i, f in enumerate(meta.files):
        if not f.pad:
            assert tmp_path.joinpath(*f.path).read_bytes() == file_bytes(meta, stream, i)
    # piece 0 starts a.bin at offset 0 (aligned); ext4/xfs take O_DIRECT, tmpfs does not
    assert direct > 0 or not st._direct.enabled
