"""Metainfo (.torrent) model, BEP 3 v1 with BEP 12/19/27/47/52: parse, validate, build.

Parsing is lenient where real torrents are sloppy (unsorted keys, trailing
bytes, wrong types in optional fields: a warning) and strict where a mistake
costs data or safety (piece hashes, lengths, paths: an error or a sanitised
path). The info-hash is always the SHA-1 of the ``info`` bytes as they stand;
the v2 one (BEP 52, read in ``metainfo_v2``) is their SHA-256.
"""

from __future__ import annotations

import hashlib
import os
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from swarm.core import metainfo_v2 as v2
from swarm.core.bencode import Raw, decode, decode_with_spans, encode
from swarm.errors import BencodeError, MetainfoError

#: Largest piece length accepted when reading; libtorrent's corpus has 536854528.
MAX_PIECE_LENGTH = 512 * 1024 * 1024
#: libtorrent's default ``max_pieces``; also bounds the bitfield we allocate.
MAX_PIECES = 0x200000
MAX_FILES = 1 << 20
#: Lengths beyond 2**62 are no real file and would overflow others' 64-bit maths.
MAX_LENGTH = 1 << 62
#: Longest path component most filesystems accept (bytes of UTF-8).
MAX_COMPONENT_BYTES = 255
MAX_PATH_DEPTH = 64
MAX_TRACKERS = 200

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent, in the torrent's byte stream order.

    ``path`` holds sanitised components, relative to the download directory
    (for a multi-file torrent the first component is the torrent's name).
    """

    path: tuple[str, ...]
    length: int
    offset: int  # where the file starts in the concatenation of all files
    pad: bool = False  # BEP 47 padding file: never written to disk
    #: BEP 47 symlink target, sanitised components relative to the torrent root
    #: (length is then 0); storage may create it or skip it, never follow it out.
    symlink: tuple[str, ...] | None = None
    executable: bool = False  # BEP 47 attr 'x'
    pieces_root: bytes | None = None  # BEP 52 Merkle root (v2 and hybrid, non-empty files)

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Metainfo:
    #: SHA-1 of info_bytes (20 bytes); for a v2-only torrent the SHA-256
    #: truncated to 20 bytes, the form handshakes, trackers and the DHT use.
    info_hash: bytes
    info_bytes: bytes  # the info dictionary exactly as it stands in the file
    name: str  # sanitised
    piece_length: int
    pieces: bytes  # concatenated 20-byte SHA-1 piece hashes (empty for v2-only)
    total_length: int  # sum of all file lengths, padding included
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool = False
    trackers: list[list[str]] = field(default_factory=list)  # BEP 12 tiers
    url_list: list[str] = field(default_factory=list)  # BEP 19 web seeds
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    warnings: list[str] = field(default_factory=list)  # what sanitising changed
    info_hash_v2: bytes | None = None  # BEP 52: SHA-256 of info_bytes (32 bytes)
    #: BEP 52 piece layers by pieces root, verified against it; may lack some files.
    piece_layers: dict[bytes, bytes] = field(default_factory=dict)

    @property
    def num_pieces(self) -> int:
        if not self.pieces:  # v2-only: files are piece-aligned in ``files``
            return -(-self.total_length // self.piece_length)
        return len(self.pieces) // 20

    @property
    def version(self) -> int | str:
        """1, 2 (v2-only) or "hybrid"."""
        if self.info_hash_v2 is None:
            return 1
        return "hybrid" if self.pieces else 2

    @property
    def swarm_hashes(self) -> tuple[bytes, ...]:
        """The 20-byte hashes peers may know this torrent by (handshakes,
        trackers, DHT): ``info_hash``, and for a hybrid its truncated v2 hash too."""
        if self.info_hash_v2 is not None and self.info_hash_v2[:20] != self.info_hash:
            return (self.info_hash, self.info_hash_v2[:20])
        return (self.info_hash,)

    @property
    def info_hash_v2_hex(self) -> str | None:
        return None if self.info_hash_v2 is None else self.info_hash_v2.hex()

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    def piece_hash(self, index: int) -> bytes:
        """The SHA-1 of piece ``index`` (v1 and hybrid; see metainfo_v2.PieceChecks for v2)."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range")
        if not self.pieces:
            raise ValueError("a v2-only torrent has no SHA-1 piece hashes")
        return self.pieces[index * 20 : index * 20 + 20]

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length

    def magnet_uri(self, peers: Sequence[tuple[str, int]] = ()) -> str:
        """BEP 9 link with name, every tracker (tier order), web seeds and ``peers``."""
        from swarm.core.magnet import Magnet

        trackers = [url for tier in self.trackers for url in tier]
        return Magnet(
            info_hash=self.info_hash,
            name=self.name,
            trackers=trackers,
            peers=list(peers),
            web_seeds=list(self.url_list),
            info_hash_v2=self.info_hash_v2,
        ).to_uri()

    def to_bytes(self) -> bytes:
        """A .torrent holding the original info bytes (same info-hash)."""
        return build_metainfo(
            self.info_bytes,
            trackers=self.trackers,
            url_list=self.url_list,
            comment=self.comment,
            created_by=self.created_by,
            creation_date=self.creation_date,
            piece_layers=self.piece_layers,
        )


# --------------------------------------------------------------------------- parse


def parse_metainfo(data: bytes) -> Metainfo:
    """Parse a whole .torrent file. Raises ``MetainfoError`` for anything unusable."""
    try:
        top, spans, end = decode_with_spans(data, strict_order=False)
    except BencodeError as exc:
        raise MetainfoError(f"not valid bencoding: {exc}") from exc
    if not isinstance(top, dict):
        raise MetainfoError("not a torrent file: the top level is not a dictionary")
    warnings: list[str] = []
    if end != len(data):
        warnings.append(f"ignored {len(data) - end} trailing bytes after the torrent")
    span = spans.get(b"info")
    if span is None or not isinstance(top.get(b"info"), dict):
        raise MetainfoError("info is missing or not a dictionary")
    info_bytes = bytes(data[span[0] : span[1]])
    trackers = _trackers(top, warnings)
    url_list = _url_list(top.get(b"url-list"), warnings)
    comment = _optional_text(top, b"comment", warnings)
    created_by = _optional_text(top, b"created by", warnings)
    creation_date: int | None = None
    raw_date = top.get(b"creation date")
    if raw_date is not None:
        if isinstance(raw_date, int) and 0 <= raw_date < 1 << 40:
            creation_date = raw_date
        else:
            warnings.append("ignored a creation date that is not a valid timestamp")
    return _build_from_info(
        top[b"info"],
        info_bytes,
        hashlib.sha1(info_bytes).digest(),
        trackers=trackers,
        url_list=url_list,
        comment=comment,
        created_by=created_by,
        creation_date=creation_date,
        warnings=warnings,
        piece_layers=top.get(b"piece layers"),
    )


def parse_info(
    info_bytes: bytes,
    *,
    trackers: Sequence[Sequence[str]] = (),
    url_list: Sequence[str] = (),
    expected_hash: bytes | None = None,
) -> Metainfo:
    """Parse a bare info dictionary (BEP 9 metadata from peers).

    With ``expected_hash`` the SHA-1 must match, else ``MetainfoError``: a peer
    that sends other metadata than the magnet named must not be believed.
    For a v2 torrent the SHA-256 may match instead, whole or truncated to 20
    bytes. Piece layers are outside the info dict: a v2 torrent read here has none.
    """
    info_bytes = bytes(info_bytes)
    digest = hashlib.sha1(info_bytes).digest()
    by_v2 = False
    if expected_hash is not None and digest != expected_hash:
        full = hashlib.sha256(info_bytes).digest()
        by_v2 = expected_hash in (full, full[:20])
    if expected_hash is not None and digest != expected_hash and not by_v2:
        raise MetainfoError(
            f"metadata hash {digest.hex()} does not match the info-hash {expected_hash.hex()}"
        )
    try:
        info = decode(info_bytes, strict_order=False)
    except BencodeError as exc:
        raise MetainfoError(f"info is not valid bencoding: {exc}") from exc
    if not isinstance(info, dict):
        raise MetainfoError("info is not a dictionary")
    tiers = [list(t) for t in trackers if t]
    meta = _build_from_info(
        info,
        info_bytes,
        digest,
        trackers=tiers,
        url_list=list(url_list),
        comment=None,
        created_by=None,
        creation_date=None,
        warnings=[],
    )
    if by_v2 and meta.info_hash_v2 is None:
        raise MetainfoError("metadata matching a v2 info-hash is not a v2 info dictionary")
    return meta


def _build_from_info(
    info: dict[bytes, Any],
    info_bytes: bytes,
    info_hash: bytes,
    *,
    trackers: list[list[str]],
    url_list: list[str],
    comment: str | None,
    created_by: str | None,
    creation_date: int | None,
    warnings: list[str],
    piece_layers: Any = None,
) -> Metainfo:
    meta_version = info.get(b"meta version")
    if meta_version not in (None, 1, 2):
        raise MetainfoError(f"info.meta version {meta_version!r} is not supported")
    is_v2 = meta_version == 2 or b"file tree" in info
    pieces = info.get(b"pieces")
    if pieces is None and is_v2:
        return _build_v2_only(
            info,
            info_bytes,
            piece_layers,
            trackers=trackers,
            url_list=url_list,
            comment=comment,
            created_by=created_by,
            creation_date=creation_date,
            warnings=warnings,
        )
    if pieces is None:
        raise MetainfoError("info.pieces is missing")
    if not isinstance(pieces, bytes):
        raise MetainfoError("info.pieces is not a string")
    if len(pieces) % 20:
        raise MetainfoError("info.pieces length is not a multiple of 20")

    piece_length = info.get(b"piece length")
    if not isinstance(piece_length, int) or piece_length <= 0:
        raise MetainfoError("info.piece length is not a positive integer")
    if piece_length > MAX_PIECE_LENGTH:
        raise MetainfoError(
            f"info.piece length {piece_length} exceeds the {MAX_PIECE_LENGTH}-byte limit"
        )
    if piece_length & (piece_length - 1) or piece_length < 16384:
        warnings.append(f"piece length {piece_length} is not a power of two of at least 16 KiB")

    name = _name(info, info_hash, warnings)
    files_value = info.get(b"files")
    if files_value is not None and b"length" in info:
        # BEP 3: exactly one; clients that read the other key would fetch other files
        raise MetainfoError("info has both 'length' and 'files' (BEP 3 allows exactly one)")
    if files_value is not None:
        files = _multi_files(files_value, name, warnings)
        multi = True
    else:
        length = info.get(b"length")
        if not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
            raise MetainfoError("info.length is not a non-negative integer")
        attr = _attr(info)
        files = [FileEntry((name,), length, 0, executable="x" in attr)]
        multi = False

    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("the torrent holds no data (total length is 0)")
    needed = -(-total // piece_length)
    if needed > MAX_PIECES:
        raise MetainfoError(f"too many pieces: {needed} (limit {MAX_PIECES})")
    have = len(pieces) // 20
    if have != needed:
        raise MetainfoError(f"info.pieces has {have} hashes but the files need {needed} pieces")
    info_hash_v2 = None
    layers: dict[bytes, bytes] = {}
    if is_v2:
        piece_length = v2.check_piece_length(piece_length, MAX_PIECE_LENGTH)
        tree_files = _tree_files(info)
        v2.check_hybrid(info, files, tree_files, piece_length)
        layers = v2.parse_piece_layers(piece_layers, tree_files, piece_length)
        roots = iter(t.pieces_root for t in tree_files)
        files = [f if f.pad else replace(f, pieces_root=next(roots)) for f in files]
        info_hash_v2 = hashlib.sha256(info_bytes).digest()

    return Metainfo(
        info_hash=info_hash,
        info_bytes=info_bytes,
        name=name,
        piece_length=piece_length,
        pieces=pieces,
        total_length=total,
        files=tuple(files),
        multi_file=multi,
        private=_private(info, warnings),
        trackers=trackers,
        url_list=url_list,
        comment=comment,
        created_by=created_by,
        creation_date=creation_date,
        warnings=warnings,
        info_hash_v2=info_hash_v2,
        piece_layers=layers,
    )


def _private(info: dict[bytes, Any], warnings: list[str]) -> bool:
    private_value = info.get(b"private", 0)
    if not isinstance(private_value, int):
        warnings.append("ignored an info.private that is not an integer")
        private_value = 0
    return private_value == 1


def _tree_files(info: dict[bytes, Any]) -> list[v2.TreeFile]:
    return v2.walk_file_tree(info.get(b"file tree"), MAX_FILES, MAX_PATH_DEPTH, MAX_LENGTH)


def _build_v2_only(
    info: dict[bytes, Any],
    info_bytes: bytes,
    piece_layers: Any,
    *,
    trackers: list[list[str]],
    url_list: list[str],
    comment: str | None,
    created_by: str | None,
    creation_date: int | None,
    warnings: list[str],
) -> Metainfo:
    """A v2-only torrent (BEP 52, no ``pieces``): files laid out piece-aligned
    with pad entries, ``info_hash`` the truncated SHA-256."""
    info_hash_v2 = hashlib.sha256(info_bytes).digest()
    info_hash = info_hash_v2[:20]
    piece_length = v2.check_piece_length(info.get(b"piece length"), MAX_PIECE_LENGTH)
    tree_files = _tree_files(info)
    tree = info[b"file tree"]
    if len(tree) == 1 and b"" in next(iter(tree.values())):
        # one file at the top: its key is the name (libtorrent ignores info.name then)
        only = tree_files[0]
        name = _name({b"name": only.path[0]}, info_hash, warnings)
        files = [FileEntry((name,), only.length, 0, executable=b"x" in only.attr)]
        roots = [only.pieces_root]
        multi = False
    else:
        name = _name(info, info_hash, warnings)
        entries = v2.v1_entries(tree_files, piece_length)
        files = _multi_files(entries, name, warnings)
        if any(f.pad != (e.get(b"attr") == b"p") for f, e in zip(files, entries, strict=True)):
            # the v1 reader takes '.pad/N' and '_____padding_file_*' for padding
            raise MetainfoError("info.file tree has a file named like a BEP 47 pad file")
        roots = [e.get(b"pieces root") for e in entries]
        multi = True
    files = [replace(f, pieces_root=r) for f, r in zip(files, roots, strict=True)]
    total = sum(f.length for f in files)
    if total == 0:
        raise MetainfoError("the torrent holds no data (total length is 0)")
    needed = -(-total // piece_length)
    if needed > MAX_PIECES:
        raise MetainfoError(f"too many pieces: {needed} (limit {MAX_PIECES})")
    return Metainfo(
        info_hash=info_hash,
        info_bytes=info_bytes,
        name=name,
        piece_length=piece_length,
        pieces=b"",
        total_length=total,
        files=tuple(files),
        multi_file=multi,
        private=_private(info, warnings),
        trackers=trackers,
        url_list=url_list,
        comment=comment,
        created_by=created_by,
        creation_date=creation_date,
        warnings=warnings,
        info_hash_v2=info_hash_v2,
        piece_layers=v2.parse_piece_layers(piece_layers, tree_files, piece_length),
    )


def _name(info: dict[bytes, Any], info_hash: bytes, warnings: list[str]) -> str:
    raw = info.get(b"name.utf-8")
    if not isinstance(raw, bytes):
        raw = info.get(b"name")
    if raw is None:
        raise MetainfoError("info.name is missing")
    if not isinstance(raw, bytes):
        raise MetainfoError("info.name is not a string")
    text = _text(raw)
    name = _component(text)
    if not name:
        name = info_hash.hex()
        warnings.append(f"name {text[:80]!r} is unusable; using the info-hash {name} instead")
    elif name != text or text.encode("utf-8") != raw:
        warnings.append(f"name {text[:80]!r} sanitised to {name!r}")
    return name


def _attr(entry: dict[bytes, Any]) -> str:
    attr = entry.get(b"attr")
    return attr.decode("ascii", "replace") if isinstance(attr, bytes) else ""


def _path_list(value: Any, what: str, lossy: list[bool] | None = None) -> list[str]:
    if not isinstance(value, list):
        raise MetainfoError(f"{what} is not a list")
    if len(value) > MAX_PATH_DEPTH:
        raise MetainfoError(f"{what} has more than {MAX_PATH_DEPTH} components")
    out = []
    for part in value:
        if not isinstance(part, bytes):
            raise MetainfoError(f"{what} has a component that is not a string")
        text = _text(part)
        if lossy is not None and text.encode("utf-8") != part:
            lossy.append(True)
        out.append(text)
    return out


def _multi_files(value: Any, name: str, warnings: list[str]) -> list[FileEntry]:
    if not isinstance(value, list):
        raise MetainfoError("info.files is not a list")
    if not value:
        raise MetainfoError("info.files is empty")
    if len(value) > MAX_FILES:
        raise MetainfoError(f"info.files has more than {MAX_FILES} entries")
    out: list[FileEntry] = []
    used: set[tuple[str, ...]] = set()
    dirs: set[tuple[str, ...]] = set()
    counters: dict[tuple[str, ...], int] = {}
    renamed = sanitised = 0  # warnings are capped: a hostile file could have a million
    offset = 0
    for index, entry in enumerate(value):
        where = f"info.files[{index}]"
        if not isinstance(entry, dict):
            raise MetainfoError(f"{where} is not a dictionary")
        attr = _attr(entry)
        symlink = "l" in attr
        length = entry.get(b"length")
        if length is None and symlink:
            length = 0
        if not isinstance(length, int) or not 0 <= length <= MAX_LENGTH:
            raise MetainfoError(f"{where}.length is not a non-negative integer")
        if symlink:
            length = 0
        raw_path = entry.get(b"path.utf-8")
        if not isinstance(raw_path, list) or not all(isinstance(p, bytes) for p in raw_path):
            raw_path = entry.get(b"path")
        pad = "p" in attr
        lossy: list[bool] = []
        if raw_path is None:
            if not pad:
                raise MetainfoError(f"{where}.path is missing")
            parts = [".pad", str(length)]
        else:
            parts = _path_list(raw_path, f"{where}.path", lossy)
        if (
            not pad
            and parts
            and (
                (len(parts) == 2 and parts[0] == ".pad" and parts[1].isdigit())
                or parts[-1].startswith("_____padding_file_")
            )
        ):
            pad = True
        clean = tuple(c for c in (_component(p) for p in parts) if c)
        if not clean:
            clean = ("_",)
        if (clean != tuple(parts) or lossy) and not pad:
            if sanitised < 20:
                warnings.append(f"path {'/'.join(parts)[:120]!r} sanitised to {'/'.join(clean)!r}")
            sanitised += 1
        target: tuple[str, ...] | None = None
        if symlink:
            raw_target = entry.get(b"symlink path")
            if raw_target is None:
                raise MetainfoError(f"{where} is a symlink without a symlink path")
            target = tuple(
                c
                for c in (_component(p) for p in _path_list(raw_target, f"{where}.symlink path"))
                if c
            )
        full = (name, *clean)
        if not pad:
            if full in used or full in dirs or any(full[:i] in used for i in range(1, len(full))):
                unique = _unique(full, used, dirs, counters)
                if renamed < 20:
                    warnings.append(f"duplicate path {'/'.join(full)!r} renamed {unique[-1]!r}")
                renamed += 1
                full = unique
            used.add(full)
            dirs.update(full[:i] for i in range(1, len(full)))
        out.append(FileEntry(full, length, offset, pad, target, "x" in attr))
        offset += length
    if sanitised > 20:
        warnings.append(f"{sanitised} paths sanitised in all")
    if renamed > 20:
        warnings.append(f"{renamed} duplicate paths renamed in all")
    return out


def _unique(
    path: tuple[str, ...],
    used: set[tuple[str, ...]],
    dirs: set[tuple[str, ...]],
    counters: dict[tuple[str, ...], int],
) -> tuple[str, ...]:
    """libtorrent's scheme, ``bar.txt`` -> ``bar.1.txt``; a directory whose
    name is taken by a file becomes ``name.d``. ``counters`` remembers the
    last suffix per name so a million copies of one path cost O(n), not O(n^2)."""
    parent = list(path[:-1])
    for i in range(1, len(parent) + 1):
        while tuple(parent[:i]) in used:
            parent[i - 1] += ".d"
    last = path[-1]
    if (*parent, last) not in used and (*parent, last) not in dirs:
        return (*parent, last)
    stem, dot, ext = last.rpartition(".")
    if not stem:
        stem, dot, ext = last, "", ""
    key = (*parent, stem, dot + ext)
    n = counters.get(key, 0) + 1
    while True:
        candidate = (*parent, f"{stem}.{n}{dot}{ext}")
        if candidate not in used and candidate not in dirs:
            counters[key] = n
            return candidate
        n += 1


def _text(raw: bytes) -> str:
    """UTF-8 with undecodable bytes replaced (by '_', as libtorrent does)."""
    return raw.decode("utf-8", "replace").replace("\ufffd", "_")


def _component(text: str) -> str:
    """One safe path component, or '' when nothing usable is left.

    Separators inside a component are not allowed to make directories: the
    pieces between them are kept (minus '.', '..' and empties) joined by '_'.
    """
    if (
        text.isprintable()
        and "/" not in text
        and "\\" not in text
        and len(text) <= MAX_COMPONENT_BYTES // 4
        and text not in ("", ".", "..")
        and text.partition(".")[0].upper().rstrip(" ") not in _WINDOWS_RESERVED
    ):
        return text  # the common case, without the per-character work below
    text = "".join("_" if unicodedata.category(ch) == "Cc" else ch for ch in text)
    parts = [p for p in text.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    out = "_".join(parts)
    if out in ("", ".", ".."):
        return ""
    stem, _, _ = out.partition(".")
    if stem.upper().rstrip(" ") in _WINDOWS_RESERVED:
        out = stem + "_" + out[len(stem) :]
    if len(out.encode("utf-8")) > MAX_COMPONENT_BYTES:
        out = _truncate(out)
    return out


def _truncate(text: str) -> str:
    stem, dot, ext = text.rpartition(".")
    if not dot or len(ext.encode()) > 20:
        stem, ext, dot = text, "", ""
    budget = MAX_COMPONENT_BYTES - len((dot + ext).encode())
    raw = stem.encode("utf-8")[:budget].decode("utf-8", "ignore")
    return raw + dot + ext


def _optional_text(top: dict[bytes, Any], key: bytes, warnings: list[str]) -> str | None:
    value = top.get(key + b".utf-8")
    if not isinstance(value, bytes):
        value = top.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes):
        warnings.append(f"ignored a {key.decode()} that is not a string")
        return None
    return value.decode("utf-8", "replace")


def _url(value: Any) -> str | None:
    if not isinstance(value, bytes):
        return None
    url = value.decode("utf-8", "replace").strip()
    if not url or len(url) > 4096 or any(ord(c) < 0x20 for c in url):
        return None
    return url


def _trackers(top: dict[bytes, Any], warnings: list[str]) -> list[list[str]]:
    """BEP 12: announce-list when present and usable, else announce as one tier."""
    seen: set[str] = set()
    tiers: list[list[str]] = []
    announce_list = top.get(b"announce-list")
    if announce_list is not None:
        if not isinstance(announce_list, list):
            warnings.append("ignored an announce-list that is not a list")
        else:
            bad = 0
            for tier in announce_list:
                if not isinstance(tier, list):
                    bad += 1
                    continue
                urls = []
                for value in tier:
                    url = _url(value)
                    if url is None:
                        bad += 1
                    elif url not in seen and len(seen) < MAX_TRACKERS:
                        seen.add(url)
                        urls.append(url)
                if urls:
                    tiers.append(urls)
            if bad:
                warnings.append(f"ignored {bad} unusable announce-list entries")
    if not tiers and b"announce" in top:
        url = _url(top[b"announce"])
        if url is None:
            if top[b"announce"] != b"":
                warnings.append("ignored an announce that is not a usable URL")
        else:
            tiers.append([url])
    return tiers


def _url_list(value: Any, warnings: list[str]) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, bytes) else value
    if not isinstance(items, list):
        warnings.append("ignored a url-list that is neither a string nor a list")
        return []
    out: list[str] = []
    for item in items[:MAX_TRACKERS]:
        url = _url(item)
        if url is None:
            if item != b"":
                warnings.append("ignored an unusable url-list entry")
        elif url not in out:
            out.append(url)
    return out


# --------------------------------------------------------------------------- build


def build_info(
    *,
    name: str | bytes,
    piece_length: int,
    pieces: bytes,
    files: Sequence[tuple[Sequence[str | bytes], int]] | None = None,
    length: int | None = None,
    private: bool = False,
) -> bytes:
    """Bencoded info dict: single-file when ``length`` is given, else ``files``
    (paths relative to the torrent's root, without the name)."""
    if piece_length <= 0 or len(pieces) % 20:
        raise ValueError("bad piece length or pieces")
    info: dict[bytes, Any] = {
        b"name": name,
        b"piece length": piece_length,
        b"pieces": pieces,
    }
    if (files is None) == (length is None):
        raise ValueError("give exactly one of files and length")
    if length is not None:
        info[b"length"] = length
    else:
        assert files is not None
        info[b"files"] = [{b"length": n, b"path": list(p)} for p, n in files]
    if private:
        info[b"private"] = 1
    return encode(info)


def build_info_v2(
    *,
    name: str | bytes,
    piece_length: int,
    files: Sequence[tuple[Sequence[bytes], int, bytes | None]],
    single: bool = False,
    pieces: bytes | None = None,
    private: bool = False,
) -> bytes:
    """Bencoded BEP 52 info dict: ``files`` are (path without the name, length,
    pieces root) in tree order. With ``pieces`` (SHA-1s of the piece-aligned
    stream) it is a hybrid whose v1 list has a BEP 47 pad file after every
    file that does not end on a piece boundary, the last one too (as
    libtorrent 2 makes them, so the same files give the same info-hashes)."""
    tree: dict[bytes, Any] = {}
    v1_files: list[dict[bytes, Any]] = []
    for path, length, root in files:
        leaf: dict[bytes, Any] = {b"length": length}
        if length:
            assert root is not None and len(root) == 32
            leaf[b"pieces root"] = root
        node = tree
        for part in ([os.fsencode(name)] if single else list(path))[:-1]:
            node = node.setdefault(part, {})
        node[os.fsencode(name) if single else path[-1]] = {b"": leaf}
        v1_files.append({b"length": length, b"path": list(path)})
        if length % piece_length:
            gap = piece_length - length % piece_length
            v1_files.append({b"attr": b"p", b"length": gap, b"path": [b".pad", b"%d" % gap]})
    info: dict[bytes, Any] = {
        b"file tree": tree,
        b"meta version": 2,
        b"name": name,
        b"piece length": piece_length,
    }
    if pieces is not None:
        info[b"pieces"] = pieces
        if single:
            info[b"length"] = files[0][1]
        else:
            info[b"files"] = v1_files
    if private:
        info[b"private"] = 1
    return encode(info)


def build_metainfo(
    info_bytes: bytes,
    *,
    trackers: Iterable[Sequence[str]] = (),
    url_list: Sequence[str] = (),
    comment: str | None = None,
    created_by: str | None = None,
    creation_date: int | None = None,
    piece_layers: Mapping[bytes, bytes] | None = None,
) -> bytes:
    """A whole .torrent around already-encoded info bytes (kept byte for byte)."""
    tiers = [list(t) for t in trackers if t]
    top: dict[bytes, Any] = {b"info": Raw(info_bytes)}
    if piece_layers:
        top[b"piece layers"] = dict(piece_layers)
    if tiers:
        top[b"announce"] = tiers[0][0]
        if len(tiers) > 1 or len(tiers[0]) > 1:
            top[b"announce-list"] = tiers
    if url_list:
        top[b"url-list"] = list(url_list)
    if comment:
        top[b"comment"] = comment
    if created_by:
        top[b"created by"] = created_by
    if creation_date is not None:
        top[b"creation date"] = creation_date
    return encode(top)
