"""Storage of BEP 52 torrents: v2-only (Merkle only) and hybrid (SHA-1 and
Merkle) pieces are written only once they verify, and read back verified."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.errors import StorageError
from swarm.storage import Storage
from tests.helpers.bep52 import v2_torrent

PL = 32768


def make(hybrid: bool) -> tuple[Metainfo, dict[tuple[bytes, ...], bytes]]:
    rng = random.Random(52)
    files = {
        (b"a.bin",): rng.randbytes(3 * PL + 1000),  # several pieces, a short last one
        (b"sub", b"small"): rng.randbytes(5000),  # less than a piece: checked against its root
        (b"z.bin",): rng.randbytes(2 * PL),
    }
    raw, _, _ = v2_torrent(files, PL, hybrid=hybrid)
    return parse_metainfo(raw), files


def stream_of(meta: Metainfo, files: dict[tuple[bytes, ...], bytes]) -> bytes:
    """The torrent's byte stream: each file where the layout puts it, pads as zeros."""
    out = bytearray(meta.total_length)
    for f in meta.files:
        if not f.pad and f.length:
            key = tuple(p.encode() for p in f.path[1:])
            out[f.offset : f.end] = files[key]
    return bytes(out)


def piece(meta: Metainfo, stream: bytes, i: int) -> bytes:
    return stream[i * meta.piece_length : i * meta.piece_length + meta.piece_size(i)]


@pytest.mark.parametrize("hybrid", [False, True])
async def test_v2_pieces_written_verified_and_read_back(tmp_path: Path, hybrid: bool) -> None:
    meta, files = make(hybrid)
    assert meta.version == ("hybrid" if hybrid else 2)
    stream = stream_of(meta, files)
    st = Storage(meta, tmp_path)
    await st.open()
    for i in range(meta.num_pieces):
        assert await st.write_piece(i, piece(meta, stream, i)), i
    for i in range(meta.num_pieces):
        assert await st.read_block(i, 0, meta.piece_size(i)) == piece(meta, stream, i)
    await st.close()
    for path, data in files.items():
        assert tmp_path.joinpath("root", *(p.decode() for p in path)).read_bytes() == data
    assert not (tmp_path / "root" / ".pad").exists()
    st = Storage(meta, tmp_path)
    await st.open(create=False)
    assert (await st.recheck()).all()
    await st.close()


@pytest.mark.parametrize("index", [0, 3, 4])  # a whole piece, a file's short last piece, a small file
async def test_a_corrupted_v2_piece_is_not_written(tmp_path: Path, index: int) -> None:
    meta, files = make(hybrid=False)
    stream = stream_of(meta, files)
    st = Storage(meta, tmp_path)
    await st.open()
    bad = bytearray(piece(meta, stream, index))
    bad[17] ^= 1
    assert not await st.write_piece(index, bad)
    assert index not in st.have
    with pytest.raises(StorageError):
        await st.read_block(index, 0, 16)
    assert await st.write_piece(index, piece(meta, stream, index))
    await st.close()


async def test_v2_read_detects_a_changed_file(tmp_path: Path) -> None:
    meta, files = make(hybrid=False)
    stream = stream_of(meta, files)
    st = Storage(meta, tmp_path)
    await st.open()
    for i in range(meta.num_pieces):
        assert await st.write_piece(i, piece(meta, stream, i))
    with open(tmp_path / "root" / "z.bin", "r+b") as fh:
        fh.write(b"\xff")
    last = meta.num_pieces - 2  # z.bin's first piece
    with pytest.raises(StorageError, match="no longer matches"):
        await st.read_block(last, 0, 16)
    await st.close()


async def test_v2_partial_download_resumes_and_rechecks(tmp_path: Path) -> None:
    meta, files = make(hybrid=False)
    stream = stream_of(meta, files)
    st = Storage(meta, tmp_path)
    await st.open()
    for i in (1, 3, 4):  # a middle piece, a file's short last piece, a small file
        assert await st.write_piece(i, piece(meta, stream, i))
    await st.close()
    st = Storage(meta, tmp_path)
    await st.open()
    have = await st.load_resume()
    assert have is not None and list(have) == [1, 3, 4]
    await st.close()
    (tmp_path / ".swarm").joinpath(st.resume_path.name if st.resume_path else "x").unlink()
    st = Storage(meta, tmp_path)
    await st.open()
    assert await st.load_resume() is None
    assert list(await st.recheck()) == [1, 3, 4]  # Merkle-checked from the disk
    await st.close()
