"""Low-level disk helpers for ``swarm.storage``: safe names, whole reads and writes, the fd cache, hashing.

Why apart from Storage: none of this knows a torrent's state (what we have,
the resume file, the read cache); each piece takes what it needs as
arguments, so Storage keeps the policy and this module the system calls.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import hashlib
import mmap
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor

from swarm.core.layout import Layout
from swarm.core.metainfo import Metainfo
from swarm.core.metainfo_v2 import PieceChecks
from swarm.errors import StorageError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK so that a FIFO planted in the tree cannot block open(); no effect on regular files.
FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
NAME_MAX = 255


def make_executor(workers: int = 4) -> ThreadPoolExecutor:
    """One pool for a whole session: hashing and disk I/O of every torrent."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="swarm-io")


def check_components(path: tuple[str, ...]) -> tuple[str, ...]:
    """Refuse anything but plain names; the parser sanitised them, we do not rely on it."""
    if not path:
        raise StorageError("refusing a file with an empty path")
    for c in path:
        if (
            not isinstance(c, str)
            or c in ("", ".", "..")
            or "/" in c
            or "\x00" in c
            or len(c.encode("utf-8", "surrogateescape")) > NAME_MAX
        ):
            raise StorageError(f"refusing unsafe path component {c!r} in {'/'.join(map(str, path))!r}")
    return path


def oserror(exc: OSError, path: str, action: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"disk full writing {path}")
    if exc.errno == errno.ELOOP:
        return StorageError(f"refusing to follow a symlink at {path}")
    return StorageError(f"cannot {action} {path}: {exc.strerror or exc}")


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        n = os.pwrite(fd, data, offset)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        data = data[n:]
        offset += n


#: O_DIRECT's alignment of the buffer address, file offset and length (a page
#: covers every logical block size in use)
DIRECT_ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def aligned_buffer(size: int) -> memoryview:
    """A zeroed, page-aligned writable buffer (anonymous mmap): a piece buffer that
    ``pwrite_direct`` can hand to the disk without a copy into the page cache."""
    return memoryview(mmap.mmap(-1, size))


def _address(data: memoryview) -> int | None:
    """Where ``data`` starts in memory (None for a read-only buffer)."""
    if data.readonly:
        return None
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(data))
    except (TypeError, ValueError, BufferError):
        return None


class DirectWriter:
    """Writes the page-aligned part of a piece with O_DIRECT, the rest buffered.

    Why: copying a received piece into the page cache was the leecher's largest
    single cost (py-spy/perf on 1 GiB over loopback: ``copy_folio_from_iter_atomic``,
    0.9-1.1 CPU-s per GiB, the fresh page-cache pages being slow to fault in on
    a VM); O_DIRECT hands the buffer to the disk (0.05 CPU-s per GiB) and leaves
    the page cache to data that is read. The descriptor is a reopening of the
    already safely opened one (``/proc/self/fd``), per write, so no path is
    resolved again and no descriptor is cached. Where O_DIRECT is refused
    (tmpfs, other systems) it turns itself off and every write is buffered.
    """

    def __init__(self) -> None:
        self.enabled = bool(_O_DIRECT) and os.path.isdir("/proc/self/fd")

    def write(self, fd: int, data: memoryview, offset: int) -> None:
        size = len(data) & ~(DIRECT_ALIGN - 1)
        if self.enabled and size and offset % DIRECT_ALIGN == 0:
            addr = _address(data)
            if addr is not None and addr % DIRECT_ALIGN == 0 and self._write_direct(fd, data[:size], offset):
                data = data[size:]
                offset += size
        if data:
            pwrite_all(fd, data, offset)

    def _write_direct(self, fd: int, data: memoryview, offset: int) -> bool:
        try:
            dfd = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_CLOEXEC | _O_DIRECT)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOENT, errno.EACCES):
                self.enabled = False  # not on this file system: buffered from now on
                return False
            raise
        try:
            pwrite_all(dfd, data, offset)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.enabled = False
            return False
        finally:
            os.close(dfd)
        return True


def pread_into(fd: int, buf: memoryview, offset: int) -> int:
    """Fill ``buf`` from ``offset``; return bytes read (less at end of file)."""
    got = 0
    while got < len(buf):
        n = os.preadv(fd, [buf[got:]], offset + got)
        if n <= 0:
            break
        got += n
    return got


def stat_regular(root_fd: int, comps: tuple[str, ...], display: str) -> os.stat_result | None:
    """lstat of ``comps`` under ``root_fd`` (no symlink followed on the way); None if it is
    absent or not a regular file."""
    try:
        dfd, opened = walk_dirs(root_fd, comps[:-1], False, display)
    except (OSError, StorageError):
        return None
    try:
        st = os.stat(comps[-1], dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return None
    finally:
        for d in opened:
            os.close(d)
    return st if stat.S_ISREG(st.st_mode) else None


def walk_dirs(root_fd: int, dirs: tuple[str, ...], create: bool, display: str) -> tuple[int, list[int]]:
    """The fd of directory ``dirs`` under ``root_fd`` (plus the fds to close), walked
    one component at a time with ``O_NOFOLLOW``; created when ``create``.
    ``display`` names the file in errors."""
    dfd = root_fd
    opened: list[int] = []
    try:
        for c in dirs:
            if create:
                try:
                    os.mkdir(c, 0o755, dir_fd=dfd)
                except FileExistsError:
                    pass
            try:
                dfd = os.open(c, DIR_FLAGS, dir_fd=dfd)
            except OSError as exc:
                if exc.errno in (errno.ENOTDIR, errno.ELOOP) and stat.S_ISLNK(
                    os.stat(c, dir_fd=dfd, follow_symlinks=False).st_mode
                ):
                    raise StorageError(f"refusing to follow a symlink at {display}") from None
                raise
            opened.append(dfd)
    except BaseException:
        for d in opened:
            os.close(d)
        raise
    return dfd, opened


def retrieve(task: asyncio.Future[bytes]) -> None:
    if not task.cancelled():
        task.exception()


class WriteTimes:
    """Verified pieces written and the seconds their pwrites took (``--metrics``' disk
    write latency), summed under a lock: the session's disk threads write in parallel."""

    __slots__ = ("count", "seconds", "_lock")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.count += 1
            self.seconds += seconds


class FdCache:
    """Open fds by file index with a cap; an fd in use by a thread is never closed."""

    def __init__(self, opener: Callable[[int, bool], int | None], cap: int) -> None:
        self._opener = opener
        self._cap = max(1, cap)
        self._lock = threading.Lock()
        self._fds: OrderedDict[int, list[int]] = OrderedDict()  # index -> [fd, users]

    def acquire(self, index: int, create: bool) -> int | None:
        with self._lock:
            entry = self._fds.get(index)
            if entry is None:
                fd = self._opener(index, create)
                if fd is None:
                    return None
                entry = self._fds[index] = [fd, 0]
            else:
                self._fds.move_to_end(index)
            entry[1] += 1
            self._evict()
            return entry[0]

    def release(self, index: int) -> None:
        with self._lock:
            entry = self._fds.get(index)
            if entry is not None:
                entry[1] -= 1
            self._evict()

    def _evict(self) -> None:
        if len(self._fds) <= self._cap:
            return
        for index in list(self._fds):
            if len(self._fds) <= self._cap:
                break
            fd, users = self._fds[index]
            if users == 0:
                del self._fds[index]
                os.close(fd)

    def fds(self) -> list[tuple[int, int]]:
        with self._lock:
            return [(i, e[0]) for i, e in self._fds.items()]

    def close_all(self) -> None:
        with self._lock:
            for fd, _users in self._fds.values():
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._fds.clear()


def piece_matches(
    layout: Layout, checks: PieceChecks | None, meta: Metainfo, index: int, data: bytes | memoryview
) -> bool:
    """Whether a whole piece's bytes hash right: SHA-1 when ``checks`` is
    None, else its file bytes (pads apart) through ``checks.new(index)``."""
    if checks is None:
        return hashlib.sha1(data).digest() == meta.piece_hash(index)
    check = checks.new(index)
    mv = memoryview(data)
    pos = 0
    for seg in layout.piece_segments(index):
        part = mv[pos : pos + seg.length]
        if layout.files[seg.file_index].pad:
            check.pad(part)
        else:
            check.update(part)
        pos += seg.length
    return check.matches()


def hash_pieces(
    layout: Layout,
    fds: FdCache,
    job: range,
    sizes: list[int],
    fresh: Collection[int],
    checks: PieceChecks,
    max_chunk: int,
) -> list[int]:
    """The pieces of ``job`` whose bytes on disk pass ``checks`` (SHA-1, v2 Merkle or both);
    memory is one chunk
    (at most ``max_chunk``), whatever the piece length. Pieces in files shorter than
    ``sizes`` says they must be, or in ``fresh`` (just created) files, are not read."""
    files = layout.files
    chunk = min(layout.piece_length, max_chunk)
    buf = memoryview(bytearray(chunk))
    zeros = b""
    good: list[int] = []
    for index in job:
        segs = layout.piece_segments(index)
        if any(
            not files[s.file_index].pad
            and (sizes[s.file_index] < s.file_offset + s.length or s.file_index in fresh)
            for s in segs
        ):
            continue
        h = checks.new(index)
        ok = True
        for s in segs:
            if files[s.file_index].pad:
                if len(zeros) < min(chunk, s.length):
                    zeros = bytes(min(chunk, s.length))
                left = s.length
                while left:
                    n = min(left, len(zeros))
                    h.pad(zeros[:n] if n < len(zeros) else zeros)
                    left -= n
                continue
            try:
                fd = fds.acquire(s.file_index, False)
            except StorageError:
                fd = None
            if fd is None:
                ok = False
                break
            try:
                pos, end = s.file_offset, s.file_offset + s.length
                while pos < end:
                    part = buf[: min(chunk, end - pos)]
                    if pread_into(fd, part, pos) != len(part):
                        ok = False
                        break
                    h.update(part)
                    pos += len(part)
            except OSError:
                ok = False
            finally:
                fds.release(s.file_index)
            if not ok:
                break
        if ok and h.matches():
            good.append(index)
    return good
