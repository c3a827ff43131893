"""Reading a torrent while it downloads: wait for pieces, read ranges, stream a file to stdout.

``PieceWaiter`` turns the engine's ``piece_verified`` callbacks into futures,
so a reader (``--stdout``, the HTTP server) can ``await`` the pieces under a
byte range. Readers never hold data the swarm produced: every byte comes back
from disk once its piece is verified, so a slow reader costs no memory and
never stalls the download (the engine keeps writing to disk meanwhile).

``StdoutStreamer`` writes one file's bytes in order to a file descriptor from
a daemon thread (a blocked pipe blocks that thread only, never the event
loop, and never keeps the process alive at exit). A reader that goes away
(EPIPE) ends the stream with ``"closed"``; ``swarm get --stdout`` then stops
the download and exits 0, as ``yes | head`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import queue
import select
import threading
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from swarm.errors import StorageError

if TYPE_CHECKING:
    from swarm.session import TorrentHandle
    from swarm.torrent import Torrent

#: Bytes read from disk and written to the pipe at a time (two in memory at most).
CHUNK = 1024 * 1024
#: Priority of pieces a reader is waiting for (the picker's normal is 1).
URGENT = 7
#: Priority of the read-ahead after them.
SOON = 5

_waiters: weakref.WeakKeyDictionary[Any, PieceWaiter] = weakref.WeakKeyDictionary()


class PieceWaiter:
    """Futures resolved when pieces verify; failed with StorageError when the torrent stops."""

    def __init__(self, torrent: Torrent) -> None:
        self._t = torrent
        self._waiting: dict[int, list[asyncio.Future[None]]] = {}
        self.stopped = False
        torrent.piece_verified.append(self._on_verified)
        torrent.on_stop.append(self._on_stop)

    @classmethod
    def of(cls, torrent: Torrent) -> PieceWaiter:
        """The one waiter of ``torrent`` (made on first use)."""
        w = _waiters.get(torrent)
        if w is None:
            w = _waiters[torrent] = cls(torrent)
        return w

    def pending(self) -> int:
        return sum(len(v) for v in self._waiting.values())

    async def wait(self, indices: Iterable[int], timeout: float | None = None) -> None:
        have = self._t.have
        missing = [i for i in indices if not have[i]]
        if not missing:
            return
        if self.stopped or self._t.stopped:
            raise StorageError(f"{self._t.meta.name}: torrent stopped")
        loop = asyncio.get_running_loop()
        futs: list[tuple[int, asyncio.Future[None]]] = []
        for i in missing:
            fut: asyncio.Future[None] = loop.create_future()
            self._waiting.setdefault(i, []).append(fut)
            futs.append((i, fut))
        try:
            await asyncio.wait_for(asyncio.gather(*(f for _, f in futs)), timeout)
        finally:
            for i, fut in futs:
                lst = self._waiting.get(i)
                if lst is not None and fut in lst:
                    lst.remove(fut)
                    if not lst:
                        del self._waiting[i]

    def _on_verified(self, index: int) -> None:
        for fut in self._waiting.pop(index, ()):
            if not fut.done():
                fut.set_result(None)

    def _on_stop(self) -> None:
        self.stopped = True
        waiting, self._waiting = self._waiting, {}
        for futs in waiting.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(StorageError(f"{self._t.meta.name}: torrent stopped"))


def pieces_of(offset: int, length: int, piece_length: int) -> range:
    """Piece indexes under the byte range [offset, offset + length)."""
    if length <= 0:
        return range(0)
    return range(offset // piece_length, (offset + length - 1) // piece_length + 1)


async def read_range(
    handle: TorrentHandle, offset: int, length: int, *, prio: int = URGENT
) -> bytes:
    """Bytes [offset, offset + length) of the torrent's byte stream, once verified on disk."""
    meta = handle.metainfo
    if offset < 0 or length < 0 or offset + length > meta.total_length:
        raise ValueError(f"range {offset}+{length} outside 0..{meta.total_length}")
    pl = meta.piece_length
    idx = pieces_of(offset, length, pl)
    if not idx:
        return b""
    handle.raise_priority(idx, prio)
    await handle.wait_pieces(idx)
    parts: list[bytes] = []
    end = offset + length
    for i in idx:
        start = max(offset, i * pl)
        stop = min(end, i * pl + meta.piece_size(i))
        parts.append(await handle.read_block(i, start - i * pl, stop - start))
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _PipeWriter:
    """Blocking writes to ``fd`` on a daemon thread; results come back as futures."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._jobs: queue.Queue[
            tuple[bytes, asyncio.Future[None], asyncio.AbstractEventLoop] | None
        ] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="swarm-stdout", daemon=True)
        self._thread.start()

    def write(self, data: bytes) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._jobs.put((data, fut, loop))
        return fut

    def close(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            data, fut, loop = job
            err: BaseException | None = None
            try:
                _write_all(self.fd, data)
            except OSError as exc:
                err = exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(_settle, fut, err)


def _settle(fut: asyncio.Future[None], err: BaseException | None) -> None:
    if fut.done():
        return
    if err is None:
        fut.set_result(None)
    else:
        fut.set_exception(err)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


class StdoutStreamer:
    """One file's bytes, in order, to ``fd`` as its pieces verify."""

    def __init__(
        self, handle: TorrentHandle, file_index: int, fd: int, *, chunk: int = CHUNK
    ) -> None:
        self.handle = handle
        self.file = handle.metainfo.files[file_index]
        self.fd = fd
        self.chunk = max(1, chunk)
        self.written = 0

    def _chunks(self) -> list[tuple[int, int]]:
        """(offset, length) in the torrent's byte stream, cut at piece boundaries."""
        pl = self.handle.metainfo.piece_length
        out = []
        pos = self.file.offset
        end = pos + self.file.length
        while pos < end:
            stop = min(end, pos + self.chunk)
            if stop < end and (stop // pl) * pl > pos:
                stop = (stop // pl) * pl  # end on a piece boundary: each piece is waited for once
            out.append((pos, stop - pos))
            pos = stop
        return out

    async def run(self) -> str:
        """ "done" once every byte is written, "closed" if the reader went away."""
        writer = _PipeWriter(self.fd)
        chunks = self._chunks()
        pl = self.handle.metainfo.piece_length
        ahead: asyncio.Task[bytes] | None = None
        try:
            for n, (off, length) in enumerate(chunks):
                data = (
                    await ahead if ahead is not None else await read_range(self.handle, off, length)
                )
                ahead = None
                if n + 1 < len(chunks):
                    noff, nlen = chunks[n + 1]
                    # read-ahead: the next chunk is fetched soon and read while this one is written
                    self.handle.raise_priority(pieces_of(noff, nlen, pl), SOON)
                    ahead = asyncio.ensure_future(read_range(self.handle, noff, nlen, prio=SOON))
                try:
                    await writer.write(data)
                except OSError as exc:
                    if exc.errno in (errno.EPIPE, errno.ECONNRESET) or isinstance(
                        exc, BrokenPipeError
                    ):
                        return "closed"
                    raise StorageError(f"stdout: {exc.strerror or exc}") from exc
                self.written += len(data)
            return "done"
        finally:
            if ahead is not None:
                ahead.cancel()
                with contextlib.suppress(BaseException):
                    await ahead
            writer.close()
