"""Pieces <-> files on disk: hash-then-pwrite in threads, verified reads, resume, safe paths.

Why it is shaped like this:

* A piece is written only after its hash matched, in one worker-thread job
  (hash + pwrite), so a ``kill -9`` loses only pieces in flight and whatever is
  on disk is either verified data or not yet written (hashes: ``write_checks``).
* Every file is opened by walking from a directory fd of the output root with
  ``O_NOFOLLOW`` on each component (``openat``-style), so no path from a
  torrent, and no symlink found in the tree, can make us write outside root.
  Components are re-checked too (no ``..``, ``/``, NUL, empty names).
* Reads for uploads load the whole piece, check its SHA-1 and keep it in a
  small LRU: several peers asking for the same piece cost one disk read, and a
  file changed under a seed is detected (StorageError) instead of served.
* Resume data (verified pieces + each file's size and mtime_ns) is believed
  only while the files look exactly as recorded; otherwise ``load_resume``
  returns None and the caller runs ``recheck``. It lives at
  ``state_dir/<infohash>.resume`` or, by default, ``<root>/.swarm/<infohash>.resume``
  (never a path of the torrent's own files; disabled if a torrent claims ``.swarm``).
* With ``wanted_files``, a piece shared with an unwanted neighbour is still
  written whole, so the neighbour file exists holding just those bytes (as
  Transmission does; no part file).

Use: ``st = Storage(meta, root, executor=make_executor())``; ``await st.open()``;
``have = await st.load_resume() or await st.recheck(progress)``; then
``write_piece`` / ``read_block``; ``save_resume()`` now and then; ``close()``.
Errors: StorageError for the disk, ProtocolError for out-of-range requests.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import cast

from swarm import safefile
from swarm.core.bitfield import Bitfield
from swarm.core.layout import (
    ABSENT,
    MAX_RESUME_SIZE,
    Layout,
    ResumeData,
    Segment,
    decode_resume,
    encode_resume,
    trusted_have,
)
from swarm.core.metainfo import Metainfo
from swarm.core.metainfo_v2 import PieceChecks, write_checks
from swarm.diskio import FILE_FLAGS as _FILE_FLAGS
from swarm.diskio import DirectWriter as _DirectWriter
from swarm.diskio import FdCache as _FdCache
from swarm.diskio import WriteTimes, hash_pieces, piece_matches, stat_regular, walk_dirs
from swarm.diskio import check_components as _check_components
from swarm.diskio import make_executor as make_executor  # re-exported: the session's pool
from swarm.diskio import oserror as _oserror
from swarm.diskio import pread_into as _pread_into
from swarm.diskio import retrieve as _retrieve
from swarm.errors import ProtocolError, StorageError

log = logging.getLogger(__name__)

#: Bytes fed to one recheck job: big enough to amortise the thread hop for small pieces.
_RECHECK_JOB_BYTES = 4 * 1024 * 1024
#: Largest read while hashing: bounds recheck memory even for 512 MiB pieces.
_HASH_CHUNK = 4 * 1024 * 1024


class Storage:
    """The files of one torrent under ``root``; see the module docstring for the rules."""

    def __init__(
        self,
        meta: Metainfo,
        root: str | Path,
        *,
        wanted_files: set[int] | None = None,
        executor: Executor | None = None,
        state_dir: Path | None = None,
        max_open_files: int = 64,
        read_cache_bytes: int = 16 * 1024 * 1024,
        verify_reads: bool = True,
        recheck_jobs: int = 4,
    ) -> None:
        self.meta = meta
        self.layout = Layout.from_meta(meta)
        self.root = Path(root)
        n = len(self.layout.files)
        if wanted_files is not None and any(not 0 <= i < n for i in wanted_files):
            raise StorageError("wanted file index out of range")
        self.wanted_files = set(range(n)) if wanted_files is None else set(wanted_files)
        self.have = Bitfield(self.layout.num_pieces)
        self._checks = write_checks(meta)
        self._paths: list[tuple[str, ...] | None] = []  # None for pad files
        self._executor = executor
        self._own_executor = executor is None
        # thread jobs submitted and not finished: close() waits for them, so no
        # descriptor is closed while a worker thread may still use it
        self._jobs: set[Future[object]] = set()
        self._closing = False
        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._resume_path: Path | None = None
        self._root_fd: int | None = None
        self._root_real = ""
        self._writable = False
        self._fds = _FdCache(self._open_file, max_open_files)
        self._direct = _DirectWriter()  # piece writes bypass the page cache where they can
        self._sized: set[int] = set()  # files already extended to full length
        self._fresh: set[int] = set()  # files this process created and has not written yet
        self._dirty: set[int] = set()  # files written since the last fsync
        self._baseline: list[tuple[int, int]] | None = None
        self._touched: set[int] = set()  # files written since the baseline
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self.write_times = WriteTimes()
        # Whole pieces are loaded, verified and cached only when two fit in the
        # budget; bigger pieces are read block by block, unverified (bounded memory).
        self.cache_pieces = read_cache_bytes // max(1, meta.piece_length)
        self._cache_enabled = self.cache_pieces >= 2
        self.loading: dict[int, asyncio.Future[bytes]] = {}  # piece loads in flight
        self._verify_reads = verify_reads
        self._recheck_jobs = max(1, recheck_jobs)
        self._resume_lock = asyncio.Lock()
        self._saved: Bitfield | None = None  # what the resume file holds
        self.cache_hits = 0
        self.cache_misses = 0

    # ------------------------------------------------------------------ setup

    async def open(self, create: bool = True) -> None:
        """Check every path, create root/directories/files (sparse) when ``create``.

        Without ``create`` nothing is created or written (``swarm check``,
        seeding from read-only media) and ``write_piece`` is refused.
        """
        paths: list[tuple[str, ...] | None] = []
        seen: set[tuple[str, ...]] = set()
        for f in self.layout.files:
            if f.pad or f.symlink is not None:
                # BEP 47 symlinks hold no data; we never create links (they
                # could point anywhere), so they are skipped like padding.
                paths.append(None)
                continue
            p = _check_components(f.path)
            if p in seen:
                raise StorageError(f"two files of the torrent share the path {'/'.join(p)!r}")
            seen.add(p)
            paths.append(p)
        self._paths = paths
        if self._executor is None:
            self._executor = make_executor()
        self._writable = create
        try:
            await self._run(self._open_sync, create)
        except BaseException:
            self._release_fds()  # a failed open leaves nothing open behind it
            raise
        hexhash = self.meta.info_hash.hex()
        if self._state_dir is not None:
            self._resume_path = self._state_dir / f"{hexhash}.resume"
        elif any(p is not None and p[0] == ".swarm" for p in paths):
            log.warning("%s: a torrent file lives under .swarm/, resume data disabled", self.root)
            self._resume_path = None
        else:
            self._resume_path = Path(self._root_real) / ".swarm" / f"{hexhash}.resume"

    def _open_sync(self, create: bool) -> None:
        root = str(self.root)
        if create:
            try:
                os.makedirs(root, exist_ok=True)
            except OSError as exc:
                raise _oserror(exc, root, "create") from None
        self._root_real = os.path.realpath(root)
        try:
            self._root_fd = os.open(self._root_real, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise _oserror(exc, root, "open") from None
        if create:
            if not os.access(self._root_real, os.W_OK):
                readonly = os.statvfs(self._root_real).f_flag & os.ST_RDONLY
                why = "Read-only file system" if readonly else "Permission denied"
                raise StorageError(f"cannot write to {root}: {why}")
            for i in sorted(self.wanted_files):
                if self._paths[i] is not None:
                    self._fds.acquire(i, True)
                    self._fds.release(i)

    def _display(self, index: int) -> str:
        p = self._paths[index] if index < len(self._paths) else None
        return os.path.join(str(self.root), *p) if p else f"<file {index}>"

    def _walk_dirs(self, index: int, create: bool) -> tuple[int, list[int]]:
        """Directory fd holding file ``index`` (plus fds to close), no symlinks followed."""
        assert self._root_fd is not None
        comps = self._paths[index]
        assert comps is not None
        return walk_dirs(self._root_fd, comps[:-1], create, self._display(index))

    def _open_file(self, index: int, create: bool) -> int | None:
        """Open file ``index``; None if absent and not ``create``. Extends new files sparsely."""
        if self._root_fd is None:
            raise StorageError("storage is not open")
        name = self._display(index)
        length = self.layout.files[index].length
        create = create and self._writable
        try:
            try:
                dfd, opened = self._walk_dirs(index, create)
            except FileNotFoundError:
                if create:
                    raise
                return None
            try:
                comps = self._paths[index]
                assert comps is not None
                mode = os.O_RDWR if self._writable else os.O_RDONLY
                try:
                    fd = os.open(comps[-1], mode | _FILE_FLAGS, dir_fd=dfd)
                except FileNotFoundError:
                    if not create:
                        return None
                    perm = 0o755 if self.layout.files[index].executable else 0o644
                    fd = os.open(comps[-1], mode | _FILE_FLAGS | os.O_CREAT | os.O_EXCL, perm, dir_fd=dfd)
                    self._fresh.add(index)
            finally:
                for d in opened:
                    os.close(d)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                raise StorageError(f"{name} is not a regular file")
            if create and index not in self._sized:
                # Only wanted files get their full (sparse) length; a neighbour
                # of a selection holds just the bytes of the pieces it shares.
                if st.st_size < length and index in self.wanted_files:
                    os.ftruncate(fd, length)  # only ever extends: existing data is kept
                self._sized.add(index)
            return fd
        except OSError as exc:
            raise _oserror(exc, name, "write to" if create else "open") from None

    def _observe(self) -> list[tuple[int, int]]:
        return [self._observed(i) for i in range(len(self._paths))]

    def _observed(self, index: int) -> tuple[int, int]:
        """File ``index``'s size and mtime, what resume data and ``_unchanged`` compare:
        ``(ABSENT, 0)`` when it is missing, not a regular file, or padding. No symlink
        is followed on the way (an lstat relative to the root)."""
        comps = self._paths[index]
        if comps is None:
            return ABSENT, 0
        assert self._root_fd is not None
        st = stat_regular(self._root_fd, comps, self._display(index))
        return (ABSENT, 0) if st is None else (st.st_size, st.st_mtime_ns)

    def _submit(self, fn: Callable[..., object], *args: object) -> asyncio.Future[object]:
        """Run ``fn`` in a worker thread, tracked until it ends (even if its awaiter is cancelled)."""
        if self._closing:
            raise StorageError("storage is closed")
        assert self._executor is not None
        job = self._executor.submit(fn, *args)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)
        return asyncio.wrap_future(job)

    async def _run(self, fn: Callable[..., object], *args: object) -> object:
        return await self._submit(fn, *args)

    def wanted_pieces(self) -> Bitfield:
        """Pieces that hold any byte of a wanted file."""
        bf = Bitfield(self.layout.num_pieces)
        for i in self.layout.pieces_for_files(self.wanted_files):
            bf.set(i)
        return bf

    # ----------------------------------------------------------------- writes

    async def write_piece(self, index: int, data: bytes | bytearray | memoryview) -> bool:
        """Hash, and only if the SHA-1 matches, pwrite the piece: one thread job.

        False on a hash mismatch (nothing written). A wrong length or index is a
        caller bug: StorageError.
        """
        if not self._writable:
            raise StorageError("storage was opened read-only")
        size = self.layout.piece_size(index)
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        if mv.nbytes != size:
            raise StorageError(f"piece {index}: {mv.nbytes} bytes, expected {size}")
        ok = bool(await self._run(self._write_job, index, mv))
        if ok:
            self.have.set(index)
            self._cache.pop(index, None)
        return ok

    def add_piece_layers(self, layers: dict[bytes, bytes]) -> None:
        """More BEP 52 piece layers (from peers, or rebuilt by recheck): pieces are checked against them."""
        if layers:
            self.meta = replace(self.meta, piece_layers={**self.meta.piece_layers, **layers})
            self._checks = write_checks(self.meta)

    def _write_job(self, index: int, mv: memoryview) -> bool:
        if not piece_matches(self.layout, self._checks, self.meta, index, mv):
            return False
        started = time.perf_counter()
        pos = 0
        files = self.layout.files
        for seg in self.layout.piece_segments(index):
            if not files[seg.file_index].pad:
                i = seg.file_index
                fd = self._fds.acquire(i, True)
                if fd is None:
                    raise StorageError(f"cannot write to {self._display(i)}: file vanished")
                try:
                    self._direct.write(fd, mv[pos : pos + seg.length], seg.file_offset)
                except OSError as exc:
                    raise _oserror(exc, self._display(i), "write to") from None
                finally:
                    self._fds.release(i)
                self._dirty.add(i)
                self._touched.add(i)
                self._fresh.discard(i)
            pos += seg.length
        self.write_times.add(time.perf_counter() - started)
        return True

    # ------------------------------------------------------------------ reads

    @property
    def caches_pieces(self) -> bool:
        """Whole pieces are read, verified and kept for uploads (two fit in the budget):
        then ``read_block(index, 0, piece_size)`` returns the cached bytes without a copy."""
        return self._cache_enabled

    def cached_piece(self, index: int) -> bytes | None:
        """A verified piece from the upload cache, without waiting (None: not cached)."""
        piece = self._cache.get(index) if index in self.have else None
        if piece is not None:
            self.cache_hits += 1
            self._cache.move_to_end(index)
        return piece

    async def read_block(self, index: int, begin: int, length: int, load: bool = True) -> bytes:
        """A block of a piece we have, for an upload. Bad bounds: ProtocolError (drop the
        peer). Not verified, disk trouble or data no longer matching its hash: StorageError,
        and the piece leaves ``have`` (stop advertising it, fetch it again). ``load=False``:
        a piece not cached is not loaded for this block (read alone, unverified)."""
        if not 0 <= index < self.layout.num_pieces:
            raise ProtocolError(f"request for piece {index} out of range")
        size = self.layout.piece_size(index)
        if begin < 0 or length <= 0 or begin + length > size:
            raise ProtocolError(f"request {begin}+{length} outside piece {index} of {size} bytes")
        if index not in self.have:
            raise StorageError(f"piece {index} is not verified on disk")
        if not self._cache_enabled or not load and index not in self._cache and index not in self.loading:
            return await self._read_or_forget(index, begin, length, False)
        piece = self.cached_piece(index)
        if piece is None:
            task = self.loading.get(index)
            if task is None:
                self.cache_misses += 1
                # A task of its own, so that a requester going away (cancelled)
                # does not cancel the read the other requesters wait for.
                task = asyncio.ensure_future(self._load_piece(index, size))
                task.add_done_callback(_retrieve)  # no "never retrieved" if all waiters left
                self.loading[index] = task
            else:
                self.cache_hits += 1
            piece = await asyncio.shield(task)
        if begin == 0 and length == size:
            return piece
        return piece[begin : begin + length]

    async def _read_or_forget(self, index: int, begin: int, length: int, verify: bool) -> bytes:
        """A read that clears ``have`` on disk trouble, so the piece is not offered again."""
        try:
            data = await self._run(self._read_job, index, begin, length, verify)
        except StorageError:
            self.have.clear(index)
            raise
        assert isinstance(data, bytes)
        return data

    async def _load_piece(self, index: int, size: int) -> bytes:
        try:
            raw = await self._read_or_forget(index, 0, size, self._verify_reads)
        finally:
            del self.loading[index]
        if index in self.have:  # not re-verified and replaced meanwhile
            self._cache[index] = raw
            while len(self._cache) > self.cache_pieces:
                self._cache.popitem(last=False)
        return raw

    def _read_job(self, index: int, begin: int, length: int, verify: bool) -> bytes:
        segs = self.layout.piece_segments(index, begin, length)
        if len(segs) == 1 and not self.layout.files[segs[0].file_index].pad:
            data = self._read_one(segs[0])  # the common case: one copy, kernel -> bytes
        else:
            data = self._read_spanning(index, begin, length)
        check = verify and not self._unchanged(index)  # hashed only if a file changed since checked
        if check and not piece_matches(self.layout, self._checks, self.meta, index, data):
            raise StorageError(
                f"piece {index} no longer matches its hash on disk "
                f"({', '.join(self._display(i) for i in self.layout.files_for_piece(index))} changed?)"
            )
        return data

    def _unchanged(self, index: int) -> bool:
        """Each file of the piece as at the last recheck/resume (size, mtime, no write of
        ours)? Then a read skips SHA-1, half a seed's CPU, for a stat (libtorrent: none)."""
        base, touched = self._baseline, self._touched
        return base is not None and all(
            i not in touched and self._observed(i) == base[i] for i in self.layout.files_for_piece(index)
        )

    def _read_one(self, seg: Segment) -> bytes:
        i = seg.file_index
        fd = self._fds.acquire(i, False)
        if fd is None:
            raise StorageError(f"{self._display(i)} is missing (deleted under us?)")
        try:
            data = os.pread(fd, seg.length, seg.file_offset)
            if 0 < len(data) < seg.length:  # a short read that is not end of file
                rest = bytearray(data)
                while len(rest) < seg.length:
                    more = os.pread(fd, seg.length - len(rest), seg.file_offset + len(rest))
                    if not more:
                        break
                    rest += more
                data = bytes(rest)
        except OSError as exc:
            raise _oserror(exc, self._display(i), "read") from None
        finally:
            self._fds.release(i)
        if len(data) != seg.length:
            raise StorageError(f"{self._display(i)} is shorter than expected (changed on disk?)")
        return data

    def _read_spanning(self, index: int, begin: int, length: int) -> bytes:
        buf = bytearray(length)
        mv = memoryview(buf)
        pos = 0
        for seg in self.layout.piece_segments(index, begin, length):
            i = seg.file_index
            if not self.layout.files[i].pad:
                fd = self._fds.acquire(i, False)
                if fd is None:
                    raise StorageError(f"{self._display(i)} is missing (deleted under us?)")
                try:
                    got = _pread_into(fd, mv[pos : pos + seg.length], seg.file_offset)
                except OSError as exc:
                    raise _oserror(exc, self._display(i), "read") from None
                finally:
                    self._fds.release(i)
                if got != seg.length:
                    raise StorageError(f"{self._display(i)} is shorter than expected (changed on disk?)")
            pos += seg.length
        return bytes(buf)

    # ---------------------------------------------------------------- recheck

    async def recheck(self, progress: Callable[[int, int], None] | None = None) -> Bitfield:
        """Hash every piece whose files exist, in parallel threads; sets ``have``.

        Pieces in missing, short or freshly created files count as missing
        without being read.
        """
        total = self.layout.num_pieces
        per_job = max(1, _RECHECK_JOB_BYTES // self.layout.piece_length)
        jobs = [range(s, min(s + per_job, total)) for s in range(0, total, per_job)]
        sizes = await self._run(self._file_sizes)
        assert isinstance(sizes, list)
        result = Bitfield(total)
        done = 0
        checks = PieceChecks(self.meta)  # v1 SHA-1, v2 Merkle or both (hybrid)
        pending: set[asyncio.Future[object]] = set()
        it = iter(jobs)
        try:
            while True:
                while len(pending) < self._recheck_jobs:
                    job = next(it, None)
                    if job is None:
                        break
                    pending.add(self._submit(self._hash_job, job, sizes, checks))
                if not pending:
                    break
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in finished:
                    job_range, good = cast(tuple[range, list[int]], f.result())
                    for i in good:
                        result.set(i)
                    done += len(job_range)
                    if progress is not None:
                        progress(done, total)
        finally:
            for f in pending:
                f.cancel()
        for i in checks.verified_later():  # v2 files without a piece layer, checked whole
            result.set(i)
        self.add_piece_layers(checks.found_layers())  # and their layers, rebuilt from the data
        self.have = result.copy()
        self._cache.clear()
        self._baseline = await self._run(self._observe)  # type: ignore[assignment]
        self._touched.clear()
        return result

    async def file_sizes(self) -> list[int]:
        """Size on disk of each file (``ABSENT`` = -1 when missing, a symlink or a pad file)."""
        sizes = await self._run(self._file_sizes)
        assert isinstance(sizes, list)
        return sizes

    def _file_sizes(self) -> list[int]:
        return [size for size, _ in self._observe()]

    def _hash_job(self, job: range, sizes: list[int], checks: PieceChecks) -> tuple[range, list[int]]:
        """Hash the pieces of ``job`` (in a worker thread); memory is one chunk."""
        good = hash_pieces(self.layout, self._fds, job, sizes, self._fresh, checks, _HASH_CHUNK)
        return job, good

    # ----------------------------------------------------------------- resume

    @property
    def resume_path(self) -> Path | None:
        return self._resume_path

    async def load_resume(self) -> Bitfield | None:
        """The saved bitfield if every file is exactly as recorded; else None (then recheck)."""
        if self._resume_path is None:
            return None
        have = await self._run(self._load_resume_sync, self._resume_path)
        if not isinstance(have, Bitfield):
            return None
        self._saved = have.copy()
        self.have = have.copy()
        self._cache.clear()
        return have

    def _resume_dir_fd(self, create: bool) -> int:
        """fd of the directory holding resume data (``state_dir``, or ``.swarm`` opened from
        the root's fd), with ``O_NOFOLLOW``: a symlink swapped in at any moment can never
        redirect the file (no lstat-then-open race)."""
        if self._state_dir is not None:
            if create:
                os.makedirs(self._state_dir, exist_ok=True)
            return os.open(self._state_dir, safefile.DIR_FLAGS)  # as before: not a symlink itself
        if self._root_fd is None:
            raise StorageError("storage is not open")
        return safefile.open_subdir(self._root_fd, ".swarm", create=create)

    def _load_resume_sync(self, path: Path) -> Bitfield | None:
        try:
            dir_fd = self._resume_dir_fd(create=False)
        except OSError:
            return None
        try:
            raw = safefile.read_small(dir_fd, path.name, MAX_RESUME_SIZE + 1)
        finally:
            os.close(dir_fd)
        if raw is None:
            return None
        resume = decode_resume(raw, self.layout, self.meta.info_hash)
        observed = self._observe()
        have = trusted_have(resume, observed)
        if have is not None:
            self._baseline = observed
            self._touched.clear()
        return have

    async def save_resume(self, have: Bitfield | None = None) -> None:
        """Write resume data atomically (temp file, fsync, rename); data files fsynced first.

        Opened without ``create`` and without a ``state_dir``, nothing is written
        (a read-only seed leaves no ``.swarm/`` next to the user's data)."""
        if self._resume_path is None or not (self._writable or self._state_dir is not None):
            return
        snapshot = (have if have is not None else self.have).copy()
        async with self._resume_lock:
            if snapshot == self._saved and not self._dirty:
                return  # nothing new since the last save (stop() then close())
            await self._run(self._save_resume_sync, self._resume_path, snapshot)
            self._saved = snapshot

    def _save_resume_sync(self, path: Path, have: Bitfield) -> None:
        # The snapshot was taken before these fsyncs and stats: every piece it
        # claims was already pwritten, so the recorded mtimes cover it.
        for i in sorted(self._dirty.copy()):  # copy: writer threads add to it
            self._dirty.discard(i)  # before fsync: a write landing meanwhile re-adds it
            try:
                fd = self._fds.acquire(i, False)
                if fd is not None:
                    try:
                        os.fsync(fd)
                    finally:
                        self._fds.release(i)
            except OSError as exc:
                raise _oserror(exc, self._display(i), "write to") from None
        observed = self._observe()
        raw = encode_resume(ResumeData(self.meta.info_hash, have, tuple(observed)))
        try:
            dir_fd = self._resume_dir_fd(create=True)
        except OSError as exc:
            raise _oserror(exc, str(path.parent), "create") from None
        try:
            safefile.write_atomic(dir_fd, path.name, raw, replace=True)
        except OSError as exc:
            raise _oserror(exc, str(path), "write to") from None
        finally:
            os.close(dir_fd)
        self._baseline = observed
        self._touched.clear()

    # ---------------------------------------------------------------- changes

    async def verify_files_unchanged(self) -> bool:
        """Cheap check for seeds: every file has its full length and, unless we
        wrote it since, the size/mtime seen at the last recheck/resume. False
        means: call ``recheck()``. (Reads also re-hash each piece they load.)"""
        result = await self._run(self._unchanged_sync, self.have.copy())
        return bool(result)

    def _unchanged_sync(self, have: Bitfield) -> bool:
        observed = self._observe()
        needed: dict[int, int] = {}  # file -> bytes our pieces need in it
        for index in have:
            for s in self.layout.piece_segments(index):
                end = s.file_offset + s.length
                if not self.layout.files[s.file_index].pad and needed.get(s.file_index, 0) < end:
                    needed[s.file_index] = end
        for i, end in needed.items():
            if observed[i][0] < end:
                return False
        if self._baseline is not None:
            for i, (now, then) in enumerate(zip(observed, self._baseline, strict=True)):
                if i not in self._touched and now != then:
                    return False
        return True

    # ------------------------------------------------------------------ close

    async def close(self) -> None:
        """Save resume (if writable or a state_dir was given), close fds, stop our own pool.

        Thread jobs already started (a write whose awaiter was cancelled, say)
        finish first: their descriptors are closed only after them, even if
        close() itself is cancelled meanwhile; no job starts after close().
        """
        try:
            if self._root_fd is not None and (self._writable or self._state_dir is not None):
                await self.save_resume()
        finally:
            self._closing = True
            jobs = [asyncio.wrap_future(job) for job in list(self._jobs)]
            if jobs:
                idle = asyncio.gather(*jobs, return_exceptions=True)
                idle.add_done_callback(lambda _: self._shut_down())
                await asyncio.shield(idle)
            else:
                self._shut_down()

    def _shut_down(self) -> None:
        self._release_fds()
        self._cache.clear()
        if self._own_executor and self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _release_fds(self) -> None:
        self._fds.close_all()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    async def __aenter__(self) -> Storage:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
