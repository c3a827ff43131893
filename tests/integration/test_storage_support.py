"""Helpers for the storage tests: hand-built Metainfo objects with known data.

Built directly (not via parse_metainfo) so that hostile paths the parser would
sanitise can reach Storage, which must refuse them on its own.
"""

from __future__ import annotations

import hashlib
import random

from swarm.core.metainfo import FileEntry, Metainfo


def make_meta(
    spec: list[tuple[tuple[str, ...], int] | tuple[tuple[str, ...], int, bool]],
    piece_length: int,
    *,
    seed: int = 1,
    name: str = "t",
) -> tuple[Metainfo, bytes]:
    """A torrent of the files in ``spec`` ((path, length[, pad])) and its whole byte stream.

    Pad files are zeros in the stream, as BEP 47 says.
    """
    rng = random.Random(seed)
    files: list[FileEntry] = []
    chunks: list[bytes] = []
    offset = 0
    for item in spec:
        path, length = item[0], item[1]
        pad = bool(item[2]) if len(item) > 2 else False  # type: ignore[misc]
        files.append(FileEntry(path, length, offset, pad))
        chunks.append(bytes(length) if pad else rng.randbytes(length))
        offset += length
    stream = b"".join(chunks)
    pieces = b"".join(
        hashlib.sha1(stream[i : i + piece_length]).digest()
        for i in range(0, len(stream), piece_length)
    )
    info_hash = hashlib.sha1(b"test" + pieces + name.encode()).digest()
    meta = Metainfo(
        info_hash=info_hash,
        info_bytes=b"",
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        total_length=offset,
        files=tuple(files),
        multi_file=len(files) > 1,
    )
    return meta, stream


def piece(meta: Metainfo, stream: bytes, index: int) -> bytes:
    start = index * meta.piece_length
    return stream[start : start + meta.piece_size(index)]


#: Pieces spanning files, empty files (at start, middle, end) and a pad file.
MIXED = [
    (("t", "empty0"), 0),
    (("t", "a.bin"), 40_000),
    (("t", "sub", "b.bin"), 10_000),
    (("t", "empty1"), 0),
    (("t", ".pad", "6768"), 6768, True),
    (("t", "c.bin"), 70_001),
    (("t", "sub", "deeper", "d.bin"), 1),
    (("t", "empty2"), 0),
]
