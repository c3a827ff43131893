"""Where the bytes of a torrent live: pieces <-> file segments, and resume data.

Pure: storage.py does the I/O, this module decides which bytes go where and
whether a resume file may be believed. Everything is computed from the
``FileEntry`` offsets, which we re-check here (storage is the last line of
defence against a parser bug or a hand-built ``Metainfo``).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from swarm.core.bencode import decode, encode
from swarm.core.bitfield import Bitfield
from swarm.core.metainfo import FileEntry, Metainfo
from swarm.errors import StorageError, SwarmError

#: A resume file is a few bytes per piece and file; anything bigger is junk.
MAX_RESUME_SIZE = 64 * 1024 * 1024
RESUME_VERSION = 1
#: Recorded size of a file that did not exist when the resume data was saved.
ABSENT = -1


class Segment(NamedTuple):
    """``length`` bytes at ``file_offset`` of file ``file_index``."""

    file_index: int
    file_offset: int
    length: int


class Layout:
    """The file table of one torrent, indexed for O(log n) range lookups."""

    __slots__ = ("files", "piece_length", "total_length", "num_pieces", "_starts")

    def __init__(self, files: Sequence[FileEntry], piece_length: int, total_length: int) -> None:
        if piece_length <= 0:
            raise StorageError(f"piece length {piece_length} is not positive")
        pos = 0
        for i, f in enumerate(files):
            if f.length < 0 or f.offset != pos:
                raise StorageError(f"file {i} has an inconsistent offset or length")
            pos += f.length
        if pos != total_length:
            raise StorageError(f"file lengths add up to {pos}, not {total_length}")
        self.files = tuple(files)
        self.piece_length = piece_length
        self.total_length = total_length
        self.num_pieces = -(-total_length // piece_length)
        self._starts = [f.offset for f in self.files]

    @classmethod
    def from_meta(cls, meta: Metainfo) -> Layout:
        layout = cls(meta.files, meta.piece_length, meta.total_length)
        if layout.num_pieces != meta.num_pieces or len(meta.pieces) % 20:
            raise StorageError(
                f"{meta.num_pieces} piece hashes for {layout.num_pieces} pieces"
            )
        return layout

    def piece_size(self, index: int) -> int:
        self._check_piece(index)
        return min(self.piece_length, self.total_length - index * self.piece_length)

    def _check_piece(self, index: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise StorageError(f"piece {index} out of range 0..{self.num_pieces - 1}")

    def segments(self, offset: int, length: int) -> list[Segment]:
        """The file segments covering ``[offset, offset+length)``, in stream order.

        Empty files never appear; pad files do (the caller skips them on write
        and reads them as zeros).
        """
        if offset < 0 or length < 0 or offset + length > self.total_length:
            raise StorageError(f"range {offset}+{length} outside 0..{self.total_length}")
        out: list[Segment] = []
        if length == 0:
            return out
        i = bisect_right(self._starts, offset) - 1
        end = offset + length
        pos = offset
        files = self.files
        while pos < end:
            f = files[i]
            if f.length:
                take = min(f.offset + f.length, end) - pos
                out.append(Segment(i, pos - f.offset, take))
                pos += take
            i += 1
        return out

    def piece_segments(self, index: int, begin: int = 0, length: int | None = None) -> list[Segment]:
        """Segments of (part of) a piece; ``begin``/``length`` are checked against the piece."""
        size = self.piece_size(index)
        if length is None:
            length = size - begin
        if begin < 0 or length < 0 or begin + length > size:
            raise StorageError(f"block {begin}+{length} outside piece {index} of {size} bytes")
        return self.segments(index * self.piece_length + begin, length)

    def files_for_piece(self, index: int) -> list[int]:
        """Indexes of the real (non-pad, non-empty) files a piece touches."""
        return [s.file_index for s in self.piece_segments(index) if not self.files[s.file_index].pad]

    def pieces_of_file(self, file_index: int) -> range:
        """Pieces that hold any byte of one file (empty for empty files)."""
        f = self.files[file_index]
        if f.length == 0:
            return range(0)
        pl = self.piece_length
        return range(f.offset // pl, (f.offset + f.length - 1) // pl + 1)

    def pieces_for_files(self, file_indexes: Iterable[int]) -> set[int]:
        """Pieces needed to complete the given files (for ``--files`` selections)."""
        out: set[int] = set()
        for i in file_indexes:
            if not 0 <= i < len(self.files):
                raise StorageError(f"file index {i} out of range")
            if not self.files[i].pad:
                out.update(self.pieces_of_file(i))
        return out


def segments(files: Sequence[FileEntry], offset: int, length: int) -> list[Segment]:
    """One-off form of ``Layout.segments`` (builds the index each call)."""
    total = files[-1].offset + files[-1].length if files else 0
    return Layout(files, 1, total).segments(offset, length)


def ranges(indexes: Iterable[int]) -> list[tuple[int, int]]:
    """Collapse indexes into sorted inclusive ``(first, last)`` runs, for humans and JSON."""
    out: list[tuple[int, int]] = []
    for i in sorted(set(indexes)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out


# --------------------------------------------------------------------- resume


@dataclass(frozen=True, slots=True)
class ResumeData:
    """What we knew when we last saved: verified pieces and each file's (size, mtime_ns).

    The bitfield is believed only while every file still has the recorded size
    and mtime; any difference means someone (or a crash) touched the data and
    the caller must re-verify.
    """

    info_hash: bytes
    have: Bitfield
    files: tuple[tuple[int, int], ...]


def encode_resume(data: ResumeData) -> bytes:
    return encode(
        {
            b"version": RESUME_VERSION,
            b"info-hash": data.info_hash,
            b"num-pieces": data.have.size,
            b"pieces": data.have.to_bytes(),
            b"files": [[size, mtime] for size, mtime in data.files],
        }
    )


def decode_resume(raw: bytes, layout: Layout, info_hash: bytes) -> ResumeData | None:
    """Parse and sanity-check resume data for this torrent; None if unusable.

    A bad resume file is never an error: the worst case is a full re-check.
    """
    if len(raw) > MAX_RESUME_SIZE:
        return None
    try:
        d: Any = decode(raw)
    except SwarmError:
        return None
    if not isinstance(d, dict):
        return None
    if d.get(b"version") != RESUME_VERSION or d.get(b"info-hash") != info_hash:
        return None
    if d.get(b"num-pieces") != layout.num_pieces:
        return None
    bits, files = d.get(b"pieces"), d.get(b"files")
    if not isinstance(bits, bytes) or not isinstance(files, list):
        return None
    if len(files) != len(layout.files):
        return None
    recorded: list[tuple[int, int]] = []
    for entry in files:
        if (
            not isinstance(entry, list)
            or len(entry) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in entry)
            or entry[0] < ABSENT
        ):
            return None
        recorded.append((entry[0], entry[1]))
    try:
        have = Bitfield.from_bytes(bits, layout.num_pieces)
    except SwarmError:
        return None
    # A piece marked verified needs its bytes in every file it touches.
    for index in have:
        for s in layout.piece_segments(index):
            f = layout.files[s.file_index]
            if not f.pad and recorded[s.file_index][0] < s.file_offset + s.length:
                return None
    return ResumeData(info_hash, have, tuple(recorded))


def trusted_have(resume: ResumeData | None, observed: Sequence[tuple[int, int]]) -> Bitfield | None:
    """The resume bitfield if the files on disk are exactly as recorded, else None."""
    if resume is None or len(observed) != len(resume.files):
        return None
    if tuple(observed) != resume.files:
        return None
    return resume.have.copy()
