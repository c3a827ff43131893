"""BitTorrent v2 (BEP 52) metainfo: the file tree, piece layers, hybrids.

``metainfo.py`` owns the ``Metainfo`` model and the v1 parser; this module
reads what v2 adds and checks it as strictly as v1 is checked: the tree's
shape (sorted keys, leaves of the form ``{"": {...}}``, no empty names, no
pad files), every non-empty file's ``pieces root``, each piece layer's size
and that it hashes up to its root, and, for a hybrid, that its v1 and v2
halves describe the same files on the same piece boundaries (otherwise v1
and v2 peers would fetch different data: a known attack).

A v2-only torrent is given a v1-shaped layout so the rest of the code needs
no second model: files in tree order, each starting on a piece boundary,
with BEP 47 pad entries between them (as libtorrent lays them out).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from swarm.core import merkle
from swarm.errors import MetainfoError

#: Above this many 16 KiB blocks libtorrent refuses a file (its tree maths is 32-bit).
MAX_FILE_BLOCKS = (1 << 30) - 1


@dataclass(frozen=True, slots=True)
class TreeFile:
    """One leaf of a v2 ``file tree``, as it stands (raw names)."""

    path: tuple[bytes, ...]
    length: int
    pieces_root: bytes | None  # None for empty files and symlinks
    attr: bytes = b""
    symlink: list[bytes] | None = None


def walk_file_tree(tree: Any, max_files: int, max_depth: int, max_length: int) -> list[TreeFile]:
    """The leaves of ``info.file tree`` in order, validated."""
    if not isinstance(tree, dict) or not tree:
        raise MetainfoError("info.file tree is missing, empty or not a dictionary")
    out: list[TreeFile] = []
    _walk(tree, (), out, max_files, max_depth, max_length)
    return out


def _walk(
    node: dict[bytes, Any],
    prefix: tuple[bytes, ...],
    out: list[TreeFile],
    max_files: int,
    max_depth: int,
    max_length: int,
) -> None:
    if len(prefix) >= max_depth:
        raise MetainfoError(f"info.file tree is nested more than {max_depth} levels deep")
    keys = list(node)
    if keys != sorted(keys):
        raise MetainfoError("info.file tree keys are not sorted")
    for key, child in node.items():
        if not key:
            raise MetainfoError("info.file tree has an empty file name")
        if not isinstance(child, dict) or not child:
            raise MetainfoError("info.file tree has an invalid entry")
        if b"" not in child:
            _walk(child, (*prefix, key), out, max_files, max_depth, max_length)
            continue
        if len(out) >= max_files:
            raise MetainfoError(f"info.file tree has more than {max_files} files")
        leaf = child[b""]
        if len(child) != 1 or not isinstance(leaf, dict):
            raise MetainfoError("info.file tree has an invalid file entry")
        out.append(_leaf((*prefix, key), leaf, max_length))


def _leaf(path: tuple[bytes, ...], leaf: dict[bytes, Any], max_length: int) -> TreeFile:
    shown = b"/".join(path).decode("utf-8", "replace")[:120]
    attr = leaf.get(b"attr", b"")
    if not isinstance(attr, bytes):
        raise MetainfoError(f"file {shown!r} of the file tree has an attr that is not a string")
    if b"p" in attr:
        raise MetainfoError(f"file {shown!r} of the file tree is marked as a pad file")
    length = leaf.get(b"length")
    if b"l" in attr:
        target = leaf.get(b"symlink path")
        if not isinstance(target, list) or not all(isinstance(p, bytes) for p in target):
            raise MetainfoError(f"symlink {shown!r} of the file tree has no valid symlink path")
        return TreeFile(path, 0, None, attr, target)
    if not isinstance(length, int) or not 0 <= length <= max_length:
        raise MetainfoError(f"file {shown!r} of the file tree has no valid length")
    if length // merkle.BLOCK_SIZE >= MAX_FILE_BLOCKS:
        raise MetainfoError(f"file {shown!r} of the file tree is too large ({length} bytes)")
    if not length:
        return TreeFile(path, 0, None, attr)
    root = leaf.get(b"pieces root")
    if not isinstance(root, bytes) or len(root) != merkle.HASH_SIZE or not any(root):
        raise MetainfoError(f"file {shown!r} of the file tree has no valid pieces root")
    return TreeFile(path, length, root, attr)


def check_piece_length(piece_length: Any, max_piece_length: int) -> int:
    """v2 pieces are whole subtrees: a power of two of at least 16 KiB."""
    if (
        not isinstance(piece_length, int)
        or piece_length < merkle.BLOCK_SIZE
        or piece_length & (piece_length - 1)
        or piece_length > max_piece_length
    ):
        raise MetainfoError(
            f"info.piece length of a v2 torrent must be a power of two from "
            f"{merkle.BLOCK_SIZE} to {max_piece_length}"
        )
    return piece_length


def file_pieces(length: int, piece_length: int) -> int:
    return -(-length // piece_length)


def parse_piece_layers(value: Any, files: Sequence[TreeFile], piece_length: int) -> dict[bytes, bytes]:
    """``piece layers`` (top level of the .torrent, outside the info dict).

    Missing layers are allowed (they come from peers, as for a magnet); a
    present one must belong to a file larger than a piece, have one hash per
    piece and hash up to that file's root. Call after the piece count is bounded.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MetainfoError("piece layers is not a dictionary")
    need = {f.pieces_root: f.length for f in files if f.pieces_root and f.length > piece_length}
    layers: dict[bytes, bytes] = {}
    for root, layer in value.items():
        if len(root) != merkle.HASH_SIZE or not isinstance(layer, bytes):
            raise MetainfoError("piece layers has an entry that is not a 32-byte root and a string")
        if root not in need:
            raise MetainfoError(f"piece layers has a layer for {root.hex()}, which is no file's root")
        expected = file_pieces(need[root], piece_length) * merkle.HASH_SIZE
        if len(layer) != expected:
            raise MetainfoError(
                f"the piece layer of {root.hex()} has {len(layer)} bytes; {expected} expected"
            )
        hashes = [layer[i : i + merkle.HASH_SIZE] for i in range(0, len(layer), merkle.HASH_SIZE)]
        if merkle.root_from_piece_layer(hashes, piece_length) != root:
            raise MetainfoError(f"the piece layer of {root.hex()} does not hash up to its root")
        layers[root] = layer
    return layers


def v1_entries(files: Sequence[TreeFile], piece_length: int) -> list[dict[bytes, Any]]:
    """The files of a v2-only torrent as v1 ``info.files`` entries (so the v1
    reader sanitises their paths), with BEP 47 pad entries between them so
    that every file starts on a piece boundary. No pad after the last file."""
    out: list[dict[bytes, Any]] = []
    offset = 0
    for f in files:
        if f.length and offset % piece_length:
            gap = piece_length - offset % piece_length
            out.append({b"length": gap, b"attr": b"p", b"path": [b".pad", str(gap).encode()]})
            offset += gap
        entry: dict[bytes, Any] = {b"length": f.length, b"path": list(f.path), b"attr": f.attr}
        if f.symlink is not None:
            entry[b"symlink path"] = f.symlink
        if f.pieces_root is not None:
            entry[b"pieces root"] = f.pieces_root  # ignored by the v1 reader, kept for the caller
        out.append(entry)
        offset += f.length
    return out


def check_hybrid(
    info: dict[bytes, Any], files: Sequence[Any], tree_files: Sequence[TreeFile], piece_length: int
) -> None:
    """Both halves of a hybrid must list the same files (raw names, lengths,
    symlinks) in the same order, each on a piece boundary in the v1 view."""
    raw_files = info.get(b"files")
    v1: list[tuple[tuple[bytes, ...], int, Any]] = []
    if isinstance(raw_files, list):
        for entry, parsed in zip(raw_files, files, strict=True):
            if not parsed.pad:
                raw_path = entry.get(b"path")
                path = tuple(raw_path) if isinstance(raw_path, list) else ()
                target = entry.get(b"symlink path") if parsed.symlink is not None else None
                v1.append((path, parsed.length, target))
    else:
        name = info.get(b"name")
        v1.append(((name if isinstance(name, bytes) else b"",), files[0].length, None))
    v2 = [(f.path, f.length, f.symlink) for f in tree_files]
    if v1 != v2:
        raise MetainfoError("the v1 and v2 file lists of this hybrid torrent do not match")
    for f in files:
        if not f.pad and f.length and f.offset % piece_length:
            raise MetainfoError(
                f"file {'/'.join(f.path)!r} of a hybrid torrent does not start on a piece boundary"
            )


# ------------------------------------------------------------------ verifying pieces


class PieceCheck:
    """Hashes one piece as it is read and says whether it matches: SHA-1 of
    every byte (pads as zeros) for v1, the Merkle subtree of the file's own
    bytes for v2 (pads are not part of a v2 piece); a hybrid checks both."""

    __slots__ = (
        "_sha1", "_sha1_expected", "_v2_expected", "_v2_width", "_leaves", "_partial", "_unverified"
    )

    def __init__(
        self,
        sha1_expected: bytes | None,
        v2_expected: bytes | None,
        v2_width: int,
        unverified: Callable[[bytes], None] | None = None,
    ) -> None:
        self._sha1 = hashlib.sha1() if sha1_expected is not None else None
        self._sha1_expected = sha1_expected
        self._v2_expected = v2_expected
        self._v2_width = v2_width
        self._leaves: list[bytes] = []
        self._partial = bytearray()
        #: given the piece's v2 hash when there is nothing to compare it with
        #: (its file's piece layer is missing): the caller checks them as a whole
        self._unverified = unverified

    def update(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes of a file (not padding), in order."""
        if self._sha1 is not None:
            self._sha1.update(data)
        if self._v2_width:
            view = memoryview(data)
            if self._partial:
                take = merkle.BLOCK_SIZE - len(self._partial)
                self._partial += view[:take]
                view = view[take:]
                if len(self._partial) < merkle.BLOCK_SIZE:
                    return
                self._leaves.append(hashlib.sha256(self._partial).digest())
                self._partial.clear()
            whole = len(view) - len(view) % merkle.BLOCK_SIZE
            self._leaves += merkle.leaf_hashes(view[:whole])
            self._partial += view[whole:]

    def pad(self, zeros: bytes | memoryview) -> None:
        """Padding bytes (zeros): part of a v1 piece only."""
        if self._sha1 is not None:
            self._sha1.update(zeros)

    def matches(self) -> bool:
        if self._sha1 is not None and self._sha1.digest() != self._sha1_expected:
            return False
        if self._v2_width:
            if self._partial:
                self._leaves.append(hashlib.sha256(self._partial).digest())
                self._partial.clear()
            digest = merkle.root(self._leaves, self._v2_width)
            if self._v2_expected is None:  # no piece layer: cannot be verified alone
                if self._unverified is not None:
                    self._unverified(digest)
                return False
            return digest == self._v2_expected
        return True


class PieceChecks:
    """Makes a ``PieceCheck`` per piece index of ``meta`` (v1, v2 or hybrid).

    Pieces of a file whose piece layer is missing cannot pass alone; their
    hashes are kept, and ``verified_later`` gives those of each such file
    whose hashes all came in and hash up to its root. ``new`` may be called
    from several threads.
    """

    def __init__(self, meta: Any) -> None:
        self.meta = meta
        self._starts: list[int] = []  # first piece of each v2 file with data
        self._files: list[Any] = []
        self._computed: dict[int, bytes] = {}  # piece -> v2 hash, files without a layer
        if meta.info_hash_v2 is not None:
            for f in meta.files:
                if not f.pad and f.length and f.pieces_root is not None:
                    self._starts.append(f.offset // meta.piece_length)
                    self._files.append(f)

    @property
    def layers_missing(self) -> list[bytes]:
        """Roots of the files larger than a piece whose piece layer we lack."""
        pl = self.meta.piece_length
        return [
            f.pieces_root for f in self._files
            if f.length > pl and f.pieces_root not in self.meta.piece_layers
        ]

    def new(self, index: int) -> PieceCheck:
        meta = self.meta
        sha1 = meta.piece_hash(index) if meta.pieces else None
        if not self._files:
            return PieceCheck(sha1, None, 0)
        k = bisect.bisect_right(self._starts, index) - 1
        f = self._files[k]
        nth = index - self._starts[k]
        pl = meta.piece_length
        if nth >= file_pieces(f.length, pl):  # a piece of padding only (odd hybrids)
            return PieceCheck(sha1, None, 0)
        if f.length <= pl:
            return PieceCheck(sha1, f.pieces_root, merkle.next_pow2(merkle.block_count(f.length)))
        layer = meta.piece_layers.get(f.pieces_root)
        if layer is None:
            return PieceCheck(
                sha1, None, pl // merkle.BLOCK_SIZE, partial(self._computed.__setitem__, index)
            )
        return PieceCheck(sha1, layer[nth * 32 : nth * 32 + 32], pl // merkle.BLOCK_SIZE)

    def verified_later(self) -> list[int]:
        """Pieces of layer-less files that, all together, hash up to the file's root."""
        pl = self.meta.piece_length
        found = self.found_layers()
        return [
            i for first, f in self._layerless()
            if f.pieces_root in found
            for i in range(first, first + file_pieces(f.length, pl))
        ]

    def found_layers(self) -> dict[bytes, bytes]:
        """The piece layers of layer-less files, rebuilt from the data: those
        whose piece hashes all came in and hash up to the file's root."""
        found: dict[bytes, bytes] = {}
        pl = self.meta.piece_length
        for first, f in self._layerless():
            indexes = range(first, first + file_pieces(f.length, pl))
            hashes = [self._computed[i] for i in indexes if i in self._computed]
            if len(hashes) == len(indexes) and merkle.root_from_piece_layer(hashes, pl) == f.pieces_root:
                found[f.pieces_root] = b"".join(hashes)
        return found

    def _layerless(self) -> list[tuple[int, Any]]:
        """(first piece, file) of the files larger than a piece without a layer."""
        pl = self.meta.piece_length
        return [
            (first, f) for first, f in zip(self._starts, self._files, strict=True)
            if f.length > pl and f.pieces_root not in self.meta.piece_layers
        ]


def write_checks(meta: Any) -> PieceChecks | None:
    """How a downloaded piece is verified: None is SHA-1 alone (v1, or a
    hybrid whose piece layers are not all known yet); else ``PieceChecks``
    (a hybrid's both hashes). A v2-only piece whose layer is missing never
    passes: fetch the layers first."""
    if meta.info_hash_v2 is None:
        return None
    checks = PieceChecks(meta)
    if meta.pieces and checks.layers_missing:
        return None
    return checks
