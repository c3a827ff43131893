"""Small files we write next to user data (.torrent of a magnet, resume data) without following symlinks.

A path is checked and then opened in two steps, so a symlink planted between
them (or already there) could send our bytes anywhere. Everything here works
relative to a directory fd: the directory is opened with ``O_NOFOLLOW``, the
temp file is created in it with ``O_CREAT|O_EXCL|O_NOFOLLOW``, fsynced, and
renamed (or hard-linked, when an existing name must be kept) into place.
"""

from __future__ import annotations

import errno
import os
import stat

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: O_NONBLOCK: a FIFO planted under our name cannot block open().
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
NAME_MAX = 255
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_subdir(parent_fd: int, name: str, *, create: bool) -> int:
    """fd of directory ``name`` inside ``parent_fd``; a symlink there is refused (ELOOP/ENOTDIR)."""
    if create:
        try:
            os.mkdir(name, 0o777, dir_fd=parent_fd)  # the umask decides, as makedirs
        except FileExistsError:
            pass
    return os.open(name, DIR_FLAGS, dir_fd=parent_fd)


def fit_name(stem: str, suffix: str, limit: int = NAME_MAX) -> str:
    """``stem + suffix`` cut (at a UTF-8 character boundary) to at most ``limit`` bytes."""
    room = limit - len(suffix.encode())
    cut = stem.encode()[:room].decode("utf-8", errors="ignore")
    return cut + suffix


def read_small(dir_fd: int, name: str, limit: int) -> bytes | None:
    """Up to ``limit`` bytes of regular file ``name``; None if absent, a symlink or not a file."""
    try:
        fd = os.open(name, READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def write_atomic(dir_fd: int, name: str, data: bytes, *, replace: bool) -> bool:
    """Write ``data`` as ``name`` in ``dir_fd`` through a temp file, fsynced, then put in place.

    ``replace=True`` renames over whatever ``name`` is (a symlink is replaced,
    never followed). ``replace=False`` never touches an existing ``name``
    (file, directory or symlink): returns False and leaves nothing behind.
    OSError for anything else.
    """
    tmp = f".{os.getpid()}.{os.urandom(4).hex()}.tmp"  # short: fits whatever ``name`` is
    if not _write_new(dir_fd, tmp, data):
        raise FileExistsError(errno.EEXIST, "temporary file exists", tmp)
    placed = False
    try:
        if replace:
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            placed = True
        else:
            try:
                os.link(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                # no hard links here (FAT, some FUSE): create the name itself exclusively
                return _write_new(dir_fd, name, data)
        os.fsync(dir_fd)
        return True
    finally:
        if not placed:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass


def _write_new(dir_fd: int, name: str, data: bytes) -> bool:
    """Create ``name`` (never an existing one, never through a symlink), write, fsync; False if it exists."""
    try:
        fd = os.open(name, _CREATE_FLAGS, 0o644, dir_fd=dir_fd)
    except FileExistsError:
        return False
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(name, dir_fd=dir_fd)
        raise
    os.close(fd)
    return True
