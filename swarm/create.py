"""Making .torrent files: walk the files, hash the pieces in worker threads.

The reader (the calling thread) fills large buffers with ``readinto`` while a
thread pool hashes the previous buffers' pieces; both release the GIL, so this
runs at disk or SHA-1 speed, not Python speed. Memory is bounded by the number
of buffers in flight. The bencoding itself is ``core.metainfo.build_*``.

v2 and hybrid torrents (BEP 52) go through the same reader with every file
starting on a piece boundary: workers compute SHA-256 leaves of 16 KiB blocks
and each piece's Merkle subtree (and, for a hybrid, the SHA-1 of the piece
with its zero padding); file roots are made from the piece hashes at the end.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from swarm import __version__
from swarm.core import merkle
from swarm.core.metainfo import (
    MAX_PIECES,
    Metainfo,
    build_info,
    build_info_v2,
    build_metainfo,
    parse_metainfo,
)
from swarm.errors import BadInput, StorageError

log = logging.getLogger(__name__)

MIN_PIECE_LENGTH = 16 * 1024
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
MAX_PIECE_LENGTH = 256 * 1024 * 1024
TARGET_PIECES = 2000
#: Bytes read per buffer (rounded up to whole pieces); a few are in flight at once.
#: Small enough that a buffer is still in the CPU cache when a worker hashes it:
#: 1 MiB measured faster than 2-8 MiB on 2 vCPUs.
BATCH_BYTES = 1024 * 1024

Progress = Callable[[int, int], None]  # (bytes hashed, total bytes)
#: What ``build_torrent`` makes: BEP 3 (v1), BEP 52 only (2) or both in one ("hybrid").
VERSIONS = (1, 2, "hybrid")


@dataclass(frozen=True, slots=True)
class SourceFile:
    fs_path: str  # where to read it
    path: tuple[bytes, ...]  # components inside the torrent (raw file-system names)
    length: int


@dataclass(slots=True)
class CreateResult:
    data: bytes  # the .torrent
    meta: Metainfo
    skipped: list[str] = field(default_factory=list)  # what the walk left out, and why
    #: where each of ``meta.files`` was read from, same order (pad files of v2 and
    #: hybrid torrents aside): the parser may have sanitised a name
    #: (``con.txt`` -> ``con_.txt``), so a seeder should read these.
    sources: list[SourceFile] = field(default_factory=list)


def choose_piece_length(total: int) -> int:
    """A power of two in 16 KiB..16 MiB giving at most ~2000 pieces (1000-2000 unless clamped)."""
    length = MIN_PIECE_LENGTH
    while length < MAX_AUTO_PIECE_LENGTH and -(-total // length) > TARGET_PIECES:
        length *= 2
    return length


def check_piece_length(length: int) -> int:
    if length < MIN_PIECE_LENGTH or length & (length - 1) or length > MAX_PIECE_LENGTH:
        raise BadInput(
            f"--piece-length {length} must be a power of two between "
            f"{MIN_PIECE_LENGTH} and {MAX_PIECE_LENGTH}"
        )
    return length


def check_url(url: str, what: str, schemes: tuple[str, ...]) -> str:
    """Refuse a typo (``-t 192.168.1.10:6969``) before it is baked into a torrent."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes or not rest or any(c.isspace() for c in url):
        raise BadInput(f"{what} {url!r} is not a {'/'.join(schemes)} URL")
    return url


def collect_files(
    path: str | os.PathLike[str], exclude: Sequence[str | os.PathLike[str]] = ()
) -> tuple[str, list[SourceFile], bool, list[str]]:
    """(name, files in torrent order, single-file?, skipped) for ``path``.

    Symlinks are left out (and listed in ``skipped``): storage opens every file
    with ``O_NOFOLLOW``, so a seed could never serve a symlinked file and
    leechers would wait for it forever. ``path`` itself being a symlink is
    BadInput naming its target, for the same reason (a seed opens it by name).
    """
    top = os.path.abspath(os.fspath(path))
    name = os.path.basename(top.rstrip(os.sep))
    if os.path.islink(top):
        raise BadInput(
            f"{path}: is a symlink; a torrent is served from the real path, give it instead: "
            f"{os.path.realpath(top)}"
        )
    try:
        st = os.stat(top)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file or directory") from None
    except OSError as exc:
        raise BadInput(f"{path}: {exc.strerror}") from None
    if not name:
        raise BadInput(f"{path}: cannot share the root directory")
    if stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            raise BadInput(f"{path}: the file is empty; a torrent needs at least one byte")
        return name, [SourceFile(top, (), st.st_size)], True, []
    if not stat.S_ISDIR(st.st_mode):
        raise BadInput(f"{path}: not a regular file or directory")
    excluded = {os.path.realpath(os.fspath(e)) for e in exclude}
    files: list[SourceFile] = []
    skipped: list[str] = []

    def on_error(exc: OSError) -> None:
        skipped.append(f"{exc.filename}: {exc.strerror}")

    for dirpath, dirnames, filenames in os.walk(top, onerror=on_error):
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                skipped.append(f"{os.path.join(dirpath, d)}: symlinked directory not followed")
        for fname in filenames:
            full = os.path.join(dirpath, fname)
            if excluded and os.path.realpath(full) in excluded:
                continue  # e.g. the .torrent being written into the shared directory
            try:
                lst = os.lstat(full)
                if stat.S_ISLNK(lst.st_mode):
                    skipped.append(f"{full}: symlink left out (seeds never follow symlinks)")
                    continue
                if not stat.S_ISREG(lst.st_mode):
                    skipped.append(f"{full}: not a regular file")
                    continue
            except OSError as exc:
                skipped.append(f"{full}: {exc.strerror}")
                continue
            rel = os.path.relpath(full, top).split(os.sep)
            files.append(SourceFile(full, tuple(os.fsencode(p) for p in rel), lst.st_size))
    files.sort(key=lambda f: f.path)
    if sum(f.length for f in files) == 0:
        raise BadInput(f"{path}: no data to share (no non-empty regular files)")
    return name, files, False, skipped


def _hash_batch(buf: bytearray, size: int, piece_length: int) -> bytes:
    view = memoryview(buf)
    sha1 = hashlib.sha1
    return b"".join(
        sha1(view[i : min(i + piece_length, size)]).digest() for i in range(0, size, piece_length)
    )


def hash_pieces(
    files: Sequence[SourceFile],
    piece_length: int,
    progress: Progress | None = None,
    workers: int | None = None,
) -> bytes:
    """Concatenated SHA-1s of the pieces of ``files`` read back to back."""
    total = sum(f.length for f in files)
    workers = workers or min(8, os.cpu_count() or 2)
    batch = max(1, BATCH_BYTES // piece_length) * piece_length
    in_flight_max = workers + 1
    free: list[bytearray] = []
    pending: deque[tuple[Future[bytes], bytearray]] = deque()
    digests: list[bytes] = []
    done = 0

    def collect_one() -> None:
        nonlocal done
        fut, buf = pending.popleft()
        digests.append(fut.result())
        free.append(buf)
        if progress is not None:
            done = min(total, done + batch)
            progress(done, total)

    with ThreadPoolExecutor(workers, thread_name_prefix="swarm-hash") as pool:
        buf = bytearray(batch)
        fill = 0
        for src in files:
            if src.length == 0:
                continue
            with _open_sequential(src.fs_path) as fh:
                remaining = src.length
                while remaining:
                    want = min(batch - fill, remaining)
                    view = memoryview(buf)[fill : fill + want]
                    _read_into(fh, view, src.fs_path)
                    view.release()
                    fill += want
                    remaining -= want
                    if fill == batch:
                        pending.append((pool.submit(_hash_batch, buf, fill, piece_length), buf))
                        if len(pending) >= in_flight_max:
                            collect_one()
                        buf = free.pop() if free else bytearray(batch)
                        fill = 0
        if fill:
            pending.append((pool.submit(_hash_batch, buf, fill, piece_length), buf))
        while pending:
            collect_one()
    return b"".join(digests)


@dataclass(frozen=True, slots=True)
class _Piece:
    """One piece of a v2 batch: where it is in the buffer and how to hash it."""

    start: int  # offset in the batch buffer
    data: int  # bytes of the file in it (the rest is zero padding)
    v1: int  # bytes the SHA-1 covers (0: no v1 hash), padding included
    width: int  # leaves of its Merkle subtree: a piece, or a file of at most one piece


def _hash_batch_v2(buf: bytearray, pieces: list[_Piece]) -> list[tuple[bytes | None, bytes]]:
    view = memoryview(buf)
    out = []
    for p in pieces:
        sha1 = hashlib.sha1(view[p.start : p.start + p.v1]).digest() if p.v1 else None
        leaves = merkle.leaf_hashes(view[p.start : p.start + p.data])
        out.append((sha1, merkle.root(leaves, p.width)))
    return out


def hash_files_v2(
    files: Sequence[SourceFile],
    piece_length: int,
    *,
    hybrid: bool,
    single: bool,
    progress: Progress | None = None,
    workers: int | None = None,
) -> tuple[bytes | None, list[tuple[bytes | None, bytes]]]:
    """(v1 pieces for a hybrid or None, per file (pieces root, piece layer)).

    Each file starts on a piece boundary; the v1 stream pads every file's
    last piece with zeros (not the only file of a single-file torrent).
    Empty files get (None, b"").
    """
    total = sum(f.length for f in files)
    workers = workers or min(8, os.cpu_count() or 2)
    batch = max(1, BATCH_BYTES // piece_length) * piece_length
    in_flight_max = workers + 1
    free: list[bytearray] = []
    pending: deque[tuple[Future[list[tuple[bytes | None, bytes]]], bytearray, list[int]]] = deque()
    v1_hashes: list[bytes] = []
    layers: list[list[bytes]] = [[] for _ in files]
    done = 0

    def collect_one() -> None:
        nonlocal done
        fut, buf, owners = pending.popleft()
        for owner, (sha1, v2) in zip(owners, fut.result(), strict=True):
            if sha1 is not None:
                v1_hashes.append(sha1)
            layers[owner].append(v2)
        free.append(buf)
        if progress is not None:
            done = min(total, done + batch)
            progress(done, total)

    with ThreadPoolExecutor(workers, thread_name_prefix="swarm-hash") as pool:
        buf = bytearray(batch)
        fill = 0
        pieces: list[_Piece] = []
        owners: list[int] = []

        def submit() -> None:
            nonlocal buf, fill, pieces, owners
            pending.append((pool.submit(_hash_batch_v2, buf, pieces), buf, owners))
            if len(pending) >= in_flight_max:
                collect_one()
            buf = free.pop() if free else bytearray(batch)
            fill = 0
            pieces, owners = [], []

        for index, src in enumerate(files):
            if src.length == 0:
                continue
            small = src.length <= piece_length
            width = merkle.next_pow2(merkle.block_count(src.length)) if small else piece_length // merkle.BLOCK_SIZE
            with _open_sequential(src.fs_path) as fh:
                remaining = src.length
                while remaining:
                    want = min(piece_length, remaining)
                    view = memoryview(buf)[fill : fill + want]
                    _read_into(fh, view, src.fs_path)
                    view.release()
                    v1 = 0
                    if hybrid:
                        v1 = want if single else piece_length
                        buf[fill + want : fill + v1] = bytes(v1 - want)  # the pad file's zeros
                    pieces.append(_Piece(fill, want, v1, width))
                    owners.append(index)
                    fill += piece_length
                    remaining -= want
                    if fill == batch:
                        submit()
        if pieces:
            pending.append((pool.submit(_hash_batch_v2, buf, pieces), buf, owners))
        while pending:
            collect_one()
    out: list[tuple[bytes | None, bytes]] = []
    for src, layer in zip(files, layers, strict=True):
        if not src.length:
            out.append((None, b""))
        elif src.length <= piece_length:
            out.append((layer[0], b""))  # a one-piece file: its piece hash is its root
        else:
            out.append((merkle.root_from_piece_layer(layer, piece_length), b"".join(layer)))
    return (b"".join(v1_hashes) if hybrid else None), out


def _open_sequential(path: str | os.PathLike[str]) -> io.FileIO:
    """Open a file to hash, telling the kernel it is read once front to back (read-ahead)."""
    try:
        fh = io.FileIO(path, "rb")
    except OSError as exc:
        raise StorageError(f"{path}: {exc.strerror}") from None
    try:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
    except (AttributeError, OSError):
        pass
    return fh


def _read_into(fh: io.FileIO, view: memoryview, path: str | os.PathLike[str]) -> None:
    """Fill ``view`` from ``fh``; a file that ends early changed under us."""
    got = 0
    while got < len(view):
        n = fh.readinto(view[got:])
        if not n:
            raise BadInput(f"{path}: file shrank while it was being hashed")
        got += n


def build_torrent(
    path: str | os.PathLike[str],
    *,
    trackers: Sequence[str] = (),
    piece_length: int | None = None,
    private: bool = False,
    comment: str | None = None,
    web_seeds: Sequence[str] = (),
    progress: Progress | None = None,
    created_by: str | None = f"swarm/{__version__}",
    creation_date: int | None = None,
    exclude: Sequence[str | os.PathLike[str]] = (),
    version: int | str = 1,
    tiers: Sequence[Sequence[str]] = (),
) -> CreateResult:
    """Walk, hash and encode; each tracker URL is its own tier (like mktorrent), after
    the ``tiers`` given whole (BEP 12: URLs of one tracker, a client uses one of them).

    ``version``: 1 (BEP 3), 2 (BEP 52 only) or "hybrid" (both, one swarm).
    """
    if version not in VERSIONS:
        raise BadInput(f"unknown torrent version {version!r}: choose 1, 2 or hybrid")
    if piece_length is not None:
        check_piece_length(piece_length)
    for url in [*trackers, *(u for tier in tiers for u in tier)]:
        check_url(url, "tracker", ("http", "https", "udp"))
    for url in web_seeds:
        check_url(url, "web seed", ("http", "https"))
    name, files, single, skipped = collect_files(path, exclude)
    total = sum(f.length for f in files)
    if piece_length is None:
        piece_length = choose_piece_length(total)
    if version == 1:
        num_pieces = -(-total // piece_length)
    else:  # every file starts on a piece boundary
        num_pieces = sum(-(-f.length // piece_length) for f in files)
    if num_pieces > MAX_PIECES:
        raise BadInput(
            f"{path}: too many pieces at piece length {piece_length}; choose a larger one"
        )
    raw_name = os.fsencode(name)
    layers: dict[bytes, bytes] = {}
    if version != 1:
        v1_pieces, hashed = hash_files_v2(
            files, piece_length, hybrid=version == "hybrid", single=single, progress=progress
        )
        layers = {root: layer for root, layer in hashed if root is not None and layer}
        info = build_info_v2(
            name=raw_name,
            piece_length=piece_length,
            files=[(f.path, f.length, root) for f, (root, _) in zip(files, hashed, strict=True)],
            single=single,
            pieces=v1_pieces,
            private=private,
        )
    elif single:
        pieces = hash_pieces(files, piece_length, progress)
        info = build_info(
            name=raw_name, piece_length=piece_length, pieces=pieces, length=total, private=private
        )
    else:
        pieces = hash_pieces(files, piece_length, progress)
        info = build_info(
            name=raw_name,
            piece_length=piece_length,
            pieces=pieces,
            files=[(f.path, f.length) for f in files],
            private=private,
        )
    data = build_metainfo(
        info,
        trackers=[list(t) for t in tiers] + [[t] for t in dict.fromkeys(trackers)],
        url_list=list(dict.fromkeys(web_seeds)),
        comment=comment,
        created_by=created_by,
        creation_date=int(time.time()) if creation_date is None else creation_date,
        piece_layers=layers,
    )
    meta = parse_metainfo(data)
    assert sum(1 for f in meta.files if not f.pad) == len(files)
    return CreateResult(data, meta, skipped, files)


def create_torrent(
    path: str | os.PathLike[str],
    *,
    trackers: Sequence[str] = (),
    piece_length: int | None = None,
    private: bool = False,
    comment: str | None = None,
    web_seeds: Sequence[str] = (),
    progress: Progress | None = None,
) -> bytes:
    """The .torrent bytes for ``path`` (blocking: call from a thread in async code)."""
    result = build_torrent(
        path,
        trackers=trackers,
        piece_length=piece_length,
        private=private,
        comment=comment,
        web_seeds=web_seeds,
        progress=progress,
    )
    for line in result.skipped:
        log.warning("skipped %s", line)
    return result.data


async def create_torrent_async(
    path: str | os.PathLike[str],
    *,
    trackers: Sequence[str] = (),
    piece_length: int | None = None,
    private: bool = False,
    comment: str | None = None,
    web_seeds: Sequence[str] = (),
    progress: Progress | None = None,
    tiers: Sequence[Sequence[str]] = (),
) -> CreateResult:
    """``build_torrent`` off the event loop; ``progress`` is called from a worker thread."""
    return await asyncio.to_thread(
        build_torrent,
        path,
        trackers=trackers,
        piece_length=piece_length,
        private=private,
        comment=comment,
        web_seeds=web_seeds,
        progress=progress,
        tiers=tiers,
    )
