"""Crafting .torrent files by hand (swarm.core.bencode.encode + real piece hashes).

``craft`` builds a torrent from raw (unsanitised) names and paths, exactly as
a hostile creator would, for data the test makes; the bytes of all files in
order are returned so a fake seed can serve them whatever the paths say.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

from swarm.core.bencode import encode

Raw = bytes | str


def _b(x: Raw) -> bytes:
    return x if isinstance(x, bytes) else x.encode("utf-8")


def piece_hashes(data: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(data[i : i + piece_length]).digest() for i in range(0, len(data), piece_length)
    )


def craft(
    name: Raw,
    files: Sequence[tuple[Sequence[Raw], int]] | None = None,
    *,
    length: int = 70_000,
    piece_length: int = 16384,
    extra_info: dict[bytes, Any] | None = None,
    file_extra: Sequence[dict[bytes, Any]] | None = None,
) -> tuple[bytes, bytes]:
    """(torrent bytes, payload). ``files`` None makes a single-file torrent of ``length``."""
    info: dict[bytes, Any] = {b"name": _b(name), b"piece length": piece_length}
    if files is None:
        payload = os.urandom(length)
        info[b"length"] = length
    else:
        entries = []
        chunks = []
        for i, (path, size) in enumerate(files):
            entry: dict[bytes, Any] = {b"length": size, b"path": [_b(p) for p in path]}
            if file_extra and i < len(file_extra):
                entry.update(file_extra[i])
            entries.append(entry)
            chunks.append(os.urandom(size))
        payload = b"".join(chunks)
        info[b"files"] = entries
    info[b"pieces"] = piece_hashes(payload, piece_length)
    if extra_info:
        info.update(extra_info)
    return encode({b"info": info, b"created by": b"swarm-qa"}), payload


def snapshot(
    root: str | os.PathLike[str], skip: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Every path under ``root`` (not following links) with type, size, link target, mtime."""
    out: dict[str, Any] = {}
    skip_s = os.fspath(skip) if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        if skip_s is not None and (dirpath == skip_s or dirpath.startswith(skip_s + os.sep)):
            dirnames[:] = []
            continue
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            if skip_s is not None and p == skip_s:
                out[p] = "skipped"
                continue
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else None
            out[p] = (st.st_mode, st.st_size if not os.path.isdir(p) else 0, link, st.st_mtime_ns)
    return out
