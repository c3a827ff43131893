from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.bencode import decode, encode
from swarm.core.bitfield import Bitfield
from swarm.core.layout import (
    ABSENT,
    Layout,
    ResumeData,
    decode_resume,
    encode_resume,
    ranges,
    segments,
    trusted_have,
)
from swarm.core.metainfo import FileEntry
from swarm.errors import StorageError


def entries(lengths: list[int], pads: list[bool] | None = None) -> list[FileEntry]:
    out = []
    pos = 0
    for i, n in enumerate(lengths):
        out.append(FileEntry((f"f{i}",), n, pos, bool(pads and pads[i])))
        pos += n
    return out


@st.composite
def layout_and_range(draw: st.DrawFn) -> tuple[list[FileEntry], int, int]:
    lengths = draw(st.lists(st.integers(0, 50), min_size=1, max_size=12))
    files = entries(lengths)
    total = sum(lengths)
    offset = draw(st.integers(0, total))
    length = draw(st.integers(0, total - offset))
    return files, offset, length


@given(layout_and_range())
def test_segments_cover_range_exactly_in_order(case: tuple[list[FileEntry], int, int]) -> None:
    files, offset, length = case
    segs = segments(files, offset, length)
    pos = offset
    last = -1
    for s in segs:
        f = files[s.file_index]
        assert s.length > 0
        assert s.file_index > last
        last = s.file_index
        assert f.offset + s.file_offset == pos  # contiguous in the stream
        assert s.file_offset >= 0 and s.file_offset + s.length <= f.length
        pos += s.length
    assert pos == offset + length


@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=10),
    st.integers(1, 33),
)
def test_pieces_and_files_agree(lengths: list[int], piece_length: int) -> None:
    files = entries(lengths)
    total = sum(lengths)
    layout = Layout(files, piece_length, total)
    assert layout.num_pieces == -(-total // piece_length)
    for p in range(layout.num_pieces):
        for fi in layout.files_for_piece(p):
            assert p in layout.pieces_for_files([fi])
    for fi in range(len(files)):
        for p in layout.pieces_for_files([fi]):
            assert fi in layout.files_for_piece(p)
    if total:
        assert layout.pieces_for_files(range(len(files))) == set(range(layout.num_pieces))


def test_pieces_spanning_files_and_pads() -> None:
    files = entries([10, 0, 6, 4, 20], [False, False, False, True, False])
    layout = Layout(files, 8, 40)
    assert layout.piece_segments(1) == [(0, 8, 2), (2, 0, 6)]
    assert layout.piece_segments(2) == [(3, 0, 4), (4, 0, 4)]
    assert layout.files_for_piece(2) == [4]  # the pad file is not a real file
    assert layout.pieces_for_files([3]) == set()
    assert layout.pieces_for_files([1]) == set()  # empty file: no pieces
    assert layout.piece_segments(4, 6, 2) == [(4, 18, 2)]
    assert layout.piece_size(4) == 8


def test_last_piece_short() -> None:
    layout = Layout(entries([10]), 4, 10)
    assert [layout.piece_size(i) for i in range(3)] == [4, 4, 2]


@pytest.mark.parametrize(
    "call",
    [
        lambda lay: lay.segments(-1, 1),
        lambda lay: lay.segments(0, 11),
        lambda lay: lay.segments(10, 1),
        lambda lay: lay.piece_segments(3),
        lambda lay: lay.piece_segments(-1),
        lambda lay: lay.piece_segments(2, 0, 3),
        lambda lay: lay.piece_segments(0, -1, 1),
        lambda lay: lay.pieces_for_files([5]),
    ],
)
def test_out_of_range_is_storage_error(call: object) -> None:
    layout = Layout(entries([3, 7]), 4, 10)
    with pytest.raises(StorageError):
        call(layout)  # type: ignore[operator]


def test_inconsistent_files_refused() -> None:
    with pytest.raises(StorageError):
        Layout([FileEntry(("a",), 5, 0), FileEntry(("b",), 5, 6)], 4, 11)
    with pytest.raises(StorageError):
        Layout(entries([5, 5]), 4, 11)
    with pytest.raises(StorageError):
        Layout(entries([5]), 0, 5)
    with pytest.raises(StorageError):
        Layout([FileEntry(("a",), -1, 0)], 4, -1)


def test_ranges() -> None:
    assert ranges([5, 1, 2, 3, 9, 8]) == [(1, 3), (5, 5), (8, 9)]
    assert ranges([]) == []


# ---------------------------------------------------------------- resume

HASH = hashlib.sha1(b"x").digest()


def sample() -> tuple[Layout, ResumeData]:
    layout = Layout(entries([10, 0, 6, 4, 20], [False, False, False, True, False]), 8, 40)
    have = Bitfield(layout.num_pieces)
    have.set(0)
    have.set(3)
    files = ((10, 111), (0, 5), (6, 7), (ABSENT, 0), (20, 99))
    return layout, ResumeData(HASH, have, files)


def test_resume_round_trip() -> None:
    layout, data = sample()
    back = decode_resume(encode_resume(data), layout, HASH)
    assert back == data
    assert back is not None
    assert trusted_have(back, list(data.files)) == data.have


def test_resume_mismatches_are_none() -> None:
    layout, data = sample()
    raw = encode_resume(data)
    assert decode_resume(raw, layout, hashlib.sha1(b"other").digest()) is None
    other = Layout(entries([10, 0, 6, 4, 21], [False, False, False, True, False]), 8, 41)
    assert decode_resume(raw, other, HASH) is None  # different piece count
    changed = list(data.files)
    changed[4] = (20, 100)  # mtime moved
    assert trusted_have(data, changed) is None
    assert trusted_have(None, list(data.files)) is None
    assert trusted_have(data, list(data.files)[:-1]) is None


def test_resume_claiming_piece_of_short_file_is_refused() -> None:
    layout, data = sample()
    files = list(data.files)
    files[4] = (11, 99)  # piece 3 (bytes 24..32) needs f4 (from 20) up to 12 bytes
    bad = ResumeData(HASH, data.have, tuple(files))
    assert decode_resume(encode_resume(bad), layout, HASH) is None
    files[4] = (12, 99)  # enough: a partial neighbour of a --files selection
    ok = ResumeData(HASH, data.have, tuple(files))
    assert decode_resume(encode_resume(ok), layout, HASH) == ok


def tamper(key: bytes, value: object) -> bytes:
    layout, data = sample()
    d = decode(encode_resume(data))
    d[key] = value
    return encode(d)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not bencode",
        b"le",
        tamper(b"version", 2),
        tamper(b"pieces", b"\xff"),  # spare bits set
        tamper(b"pieces", b"\x00\x00"),  # wrong length
        tamper(b"pieces", 5),
        tamper(b"files", [[1, 2]]),
        tamper(b"files", [[1, 2, 3]] * 5),
        tamper(b"files", [b"x"] * 5),
        tamper(b"files", [[-2, 0]] * 5),
        tamper(b"num-pieces", 6),
    ],
)
def test_bad_resume_is_none(raw: bytes) -> None:
    layout, _ = sample()
    assert decode_resume(raw, layout, HASH) is None


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decode_resume_never_raises(raw: bytes) -> None:
    layout, data = sample()
    assert decode_resume(raw, layout, HASH) in (None, data)


@given(st.data())
def test_decode_resume_mutations_never_raise(data: st.DataObject) -> None:
    layout, sample_data = sample()
    raw = bytearray(encode_resume(sample_data))
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    result = decode_resume(bytes(raw), layout, HASH)
    assert result is None or isinstance(result, ResumeData)
