"""`swarm daemon`: many torrents on one ``Session``, added, paused, resumed and removed
while it runs, and all of them back after a restart.

A paused torrent is taken out of the session (its resume data saved) and
added again on resume, so pausing needs nothing from the engine but the
public ``Session``/``TorrentHandle`` API. Every change is saved to
``DIR/.swarm-daemon/`` (``swarm.daemon.state``) before it is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swarm import safefile
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.errors import BadInput, SwarmError
from swarm.session import Session, TorrentHandle
from swarm.status import TorrentStatus
from swarm.ui.format import fraction_done
from swarm.ui.jsonl import JsonReporter

from .events import EventHub
from .state import Entry, StateStore

log = logging.getLogger("swarm.daemon")

#: Seconds between snapshots fed to the event stream (only torrents whose figures changed).
TICK = 1.0
#: Seconds the metadata of a magnet is looked for before the torrent shows an error.
METADATA_TIMEOUT = 120.0


class Conflict(SwarmError):
    """The torrent is already in the daemon (HTTP 409)."""


class NotFound(SwarmError):
    """No torrent with that info-hash (HTTP 404)."""


class Forbidden(SwarmError):
    """A path the daemon may not publish (HTTP 403)."""


@dataclass
class AddOptions:
    """The options of an added torrent (API body fields ``dir``, ``files``, ``sequential``, ``paused``)."""

    dir: str | None = None
    files: list[str] | None = None
    sequential: bool = False
    paused: bool = False

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AddOptions:
        opts = cls(
            dir=obj.get("dir"), files=obj.get("files"),
            sequential=obj.get("sequential", False), paused=obj.get("paused", False),
        )
        if opts.dir is not None and not (isinstance(opts.dir, str) and opts.dir):
            raise BadInput("dir: expected a path")
        if opts.files is not None and not (
            isinstance(opts.files, list) and all(isinstance(g, str) and g for g in opts.files)
        ):
            raise BadInput("files: expected a list of globs")
        if not isinstance(opts.sequential, bool) or not isinstance(opts.paused, bool):
            raise BadInput("sequential and paused: expected true or false")
        return opts


def api_hash(info_hash: bytes, info_hash_v2: bytes | None) -> str:
    """The API's IH: the v1 info-hash in hex, or for a v2-only torrent its whole SHA-256
    (64 digits), never the truncated 20 bytes its swarm uses on the wire."""
    if info_hash_v2 is not None and info_hash == info_hash_v2[:20]:
        return info_hash_v2.hex()
    return info_hash.hex()


class DaemonReporter(JsonReporter):
    """``--json`` events of one torrent under the API's IH (a v2-only torrent's status
    names it by its truncated hash, and a magnet has no status before its metadata)."""

    def __init__(self, ih: str, hub: EventHub) -> None:
        super().__init__(stream=hub, interval=TICK)  # type: ignore[arg-type]  # write+flush
        self.ih = ih

    @property
    def info_hash(self) -> str | None:
        return self.ih


class Managed:
    """One torrent of the daemon: its saved entry and, unless paused, its live handle."""

    def __init__(self, entry: Entry, meta: Metainfo | None, hub: EventHub) -> None:
        self.entry = entry
        self.meta = meta
        #: the 64-digit v2 hash (v2 and hybrid), by which a hybrid can be named too
        self.info_hash_v2 = info_hash_v2_of(entry, meta)
        self.handle: TorrentHandle | None = None
        self.phase: str | None = "metadata" if meta is None else None  # metadata/checking before a handle
        self.error: str | None = None
        self.task: asyncio.Task[None] | None = None
        self.pump: asyncio.Task[None] | None = None
        self.last: TorrentStatus | None = None
        self.reporter = DaemonReporter(entry.info_hash, hub)
        self._last_key: tuple[object, ...] | None = None
        #: the handle that was idle with its rates at 0 at the last look (nothing of it can
        #: change until it wakes); None when busy, or before a look at a new handle
        self._at_rest: TorrentHandle | None = None

    def status(self) -> TorrentStatus | None:
        if self.handle is not None:
            self.last = self.handle.status()
        return self.last

    @property
    def state(self) -> str:
        if self.error is not None:
            return "error"
        if self.entry.paused:
            return "paused"
        s = self.status()
        if self.handle is None or s is None:
            return self.phase or "checking"
        return "paused" if s.state == "stopped" else s.state

    def to_json(self) -> dict[str, object]:
        """The API's torrent object."""
        s = self.status()
        size = s.total_size if s is not None else (self.meta.total_length if self.meta else 0)
        verified = s.verified if s is not None else min(self.entry.verified, size)
        obj: dict[str, object] = {
            "info_hash": self.entry.info_hash,
            "info_hash_v2": self.info_hash_v2,
            "name": (s.name if s is not None else None) or self.entry.name or self.entry.info_hash,
            "state": self.state,
            "progress": round(fraction_done(s), 6) if s is not None else round(verified / size, 6) if size else 0.0,
            "size": size,
            "verified": verified,
            "downloaded": s.downloaded if s is not None else 0,
            "uploaded": s.uploaded if s is not None else 0,
            "down_rate": int(s.down_rate) if s is not None and self.handle is not None else 0,
            "up_rate": int(s.up_rate) if s is not None and self.handle is not None else 0,
            "peers": len(s.peers) if s is not None and self.handle is not None else 0,
            "eta": None if s is None or s.eta is None or self.handle is None else round(s.eta, 1),
            "dir": self.entry.dir,
            "error": self.error or (s.error if s is not None else None),
            "files": self.entry.files,
            "sequential": self.entry.sequential,
            "seed": self.entry.seed,
            "added_at": self.entry.added_at,
        }
        return obj

    def tick(self) -> None:
        """Feed the event stream a snapshot when the figures changed. An idle torrent
        that was at rest at the last look is not looked at (no snapshot of 200 idle
        seeds a second); its first peer or address makes it busy again."""
        handle = self.handle
        if handle is None:
            return
        idle = handle.idle()
        if idle and self._at_rest is handle:
            return
        s = self.status()
        assert s is not None
        resting = idle and not s.down_rate and not s.up_rate  # rates decay after the last peer
        self._at_rest = handle if resting else None
        key = (s.state, s.verified, int(s.down_rate), int(s.up_rate), len(s.peers), s.downloaded, s.uploaded)
        if key != self._last_key:
            self._last_key = key
            self.reporter.update(s)


class Daemon:
    """The torrents of one ``swarm daemon`` and the operations of its API."""

    def __init__(
        self, session: Session, root: Path, store: StateStore, hub: EventHub, shares: Iterable[Path] = ()
    ) -> None:
        self.session = session
        self.root = root.resolve()
        self.store = store
        self.hub = hub
        self.shares = [self.root, *(Path(p).resolve() for p in shares)]
        self.torrents: dict[str, Managed] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()  # one change (and one state save) at a time

    # -- life cycle ------------------------------------------------------------------
    async def start(self) -> None:
        """Bring back every saved torrent (paused ones stay paused)."""
        for entry in await asyncio.to_thread(self.store.load):
            data = await asyncio.to_thread(self.store.load_torrent, entry.info_hash)
            meta = None
            if data is not None:
                try:
                    meta = parse_metainfo(data)
                except BadInput as exc:
                    log.error("%s: saved torrent unreadable: %s", entry.info_hash, exc)
            m = self.torrents[entry.info_hash] = Managed(entry, meta, self.hub)
            if meta is None and entry.magnet is None:
                m.error = "the saved .torrent is missing or unreadable; remove and add it again"
            elif not entry.paused:
                self._launch(m)
        self._ticker = asyncio.get_running_loop().create_task(self._tick_loop())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        for m in self.torrents.values():
            await self._stop(m)
        with contextlib.suppress(OSError):
            await self._save()  # the verified figures, for the list after a restart

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            for m in list(self.torrents.values()):
                m.tick()

    # -- adding ----------------------------------------------------------------------
    async def add_torrent_bytes(self, data: bytes, opts: AddOptions) -> str:
        try:
            meta = parse_metainfo(data)
        except BadInput as exc:
            raise BadInput(f"not a valid .torrent: {exc}") from None
        return await self._add(meta, data, opts)

    async def add_magnet(self, uri: str, opts: AddOptions) -> str:
        from swarm.core.magnet import parse_magnet

        magnet = parse_magnet(uri)
        ih = api_hash(magnet.info_hash, magnet.info_hash_v2)
        async with self._lock:
            if self._present(ih, magnet.info_hash_v2):
                raise Conflict(f"{ih}: already added")
            entry = Entry(ih, self._download_dir(opts), name=magnet.name or "", files=opts.files,
                          sequential=opts.sequential, paused=opts.paused, magnet=uri)
            m = self.torrents[ih] = Managed(entry, None, self.hub)
            await self._save()
        if not opts.paused:
            self._launch(m)
        return ih

    async def add_seed(self, path_text: str, opts: AddOptions) -> str:
        """Share a local file or directory inside DIR or a --share directory; its .torrent goes in DIR."""
        from swarm.cli.get import save_torrent_file, warn
        from swarm.create import create_torrent_async

        path = self.confine(path_text)
        result = await create_torrent_async(path)
        await asyncio.to_thread(save_torrent_file, self.root, result.meta.name, result.data, warn)
        return await self._add(result.meta, result.data, opts, seed_dir=str(path.parent))

    def confine(self, path_text: str) -> Path:
        """``path_text`` (relative to DIR) resolved through every symlink; Forbidden outside
        DIR and the --share directories, BadInput if it does not exist."""
        path = self._inside(path_text, "shared")
        if path == self.root:
            raise Forbidden(f"{path_text}: the daemon's whole directory cannot be shared")
        if not os.path.exists(path):  # False for a name too long, too
            raise BadInput(f"{path_text}: no such file or directory")
        return path

    def _inside(self, path_text: str, what: str) -> Path:
        """``path_text`` resolved; Forbidden unless inside DIR or a --share directory, and
        outside the daemon's state: whoever can reach the API cannot make the daemon read or
        write anywhere else (another user's torrent aimed at ~/.bashrc, say)."""
        path = resolve_under(self.root, path_text)
        if not any(path == share or path.is_relative_to(share) for share in self.shares):
            raise Forbidden(f"{path_text}: outside the daemon's directory and its --share directories")
        state = self.store.path.resolve()
        if path == state or path.is_relative_to(state):
            raise Forbidden(f"{path_text}: the daemon's state cannot be {what}")
        return path

    def _download_dir(self, opts: AddOptions) -> str:
        return str(self._inside(opts.dir, "written")) if opts.dir else str(self.root)

    async def _add(self, meta: Metainfo, data: bytes, opts: AddOptions, *, seed_dir: str | None = None) -> str:
        ih = api_hash(meta.info_hash, meta.info_hash_v2)
        async with self._lock:
            if self._present(ih, meta.info_hash_v2):
                raise Conflict(f"{meta.name}: already added ({ih})")
            entry = Entry(ih, seed_dir or self._download_dir(opts), name=meta.name, files=opts.files,
                          sequential=opts.sequential, paused=opts.paused, seed=seed_dir is not None)
            await asyncio.to_thread(self.store.save_torrent, ih, data)
            m = self.torrents[ih] = Managed(entry, meta, self.hub)
            await self._save()
        if not opts.paused:
            self._launch(m)
        return ih

    # -- pause, resume, remove ---------------------------------------------------------
    def get(self, ih: str) -> Managed:
        m = self._find(ih.lower())
        if m is None:
            raise NotFound(f"{ih}: no such torrent")
        return m

    def _find(self, ih: str) -> Managed | None:
        """The torrent of IH, or the hybrid whose v2 hash it is."""
        m = self.torrents.get(ih)
        if m is None and len(ih) == 64:
            m = next((t for t in self.torrents.values() if t.info_hash_v2 == ih), None)
        return m

    def _present(self, ih: str, info_hash_v2: bytes | None) -> bool:
        """Whether the torrent is here already, under either of its hashes."""
        return self._find(ih) is not None or (
            info_hash_v2 is not None and self._find(info_hash_v2.hex()) is not None
        )

    async def pause(self, ih: str) -> None:
        m = self.get(ih)
        async with self._lock:  # held through the stop: a resume cannot interleave with it
            if m.entry.paused:
                return
            m.entry.paused = True
            await self._stop(m)
            await self._save()
        m.reporter.emit("paused", {})

    async def resume(self, ih: str) -> None:
        m = self.get(ih)
        async with self._lock:
            if not m.entry.paused and m.error is None:
                return
            m.entry.paused = False
            await self._stop(m)  # an errored torrent starts over
            m.error = None
            await self._save()
            self._launch(m)
        m.reporter.emit("resumed", {})

    async def remove(self, ih: str, *, delete_data: bool = False) -> None:
        m = self.get(ih)
        async with self._lock:
            self.torrents.pop(m.entry.info_hash, None)
            await self._stop(m)
            await self._save()
            await asyncio.to_thread(self.store.remove_torrent, m.entry.info_hash)
        m.reporter.emit("removed", {"delete_data": delete_data})
        if delete_data and m.meta is not None:
            await asyncio.to_thread(delete_files, Path(m.entry.dir), m.meta)

    # -- running a torrent -------------------------------------------------------------
    def _launch(self, m: Managed) -> None:
        m.task = asyncio.get_running_loop().create_task(self._run(m))

    async def _run(self, m: Managed) -> None:
        """Metadata (for a magnet), then the torrent in the session; an error is the torrent's state."""
        from swarm.core.magnet import parse_magnet

        try:
            # a magnet's x.pe peers, and those that gave its metadata, are where the data is too
            peers = list(parse_magnet(m.entry.magnet).peers) if m.entry.magnet else []
            if m.meta is None:
                m.phase = "metadata"
                assert m.entry.magnet is not None
                meta = await self.session.fetch_metadata(parse_magnet(m.entry.magnet), timeout=METADATA_TIMEOUT)
                peers += [p for p in self.session.take_metadata_peers(meta.info_hash) if p not in peers]
                await asyncio.to_thread(self.store.save_torrent, m.entry.info_hash, meta.to_bytes())
                m.meta = meta
                m.info_hash_v2 = info_hash_v2_of(m.entry, meta)
                m.entry.name = meta.name
                async with self._lock:
                    await self._save()
            m.phase = "checking"
            save = Path(m.entry.dir)
            if not m.entry.seed:
                await asyncio.to_thread(save.mkdir, parents=True, exist_ok=True)
            handle = await self.session.add_torrent(
                m.meta, save, seed_only=m.entry.seed, files=m.entry.files, peers=peers
            )
            if m.entry.sequential:
                handle.set_sequential(True)
            m.handle = handle
            m.reporter.start(handle.status(), path=str(save / m.meta.name))
            m.pump = asyncio.get_running_loop().create_task(self._pump(m, handle))
        except asyncio.CancelledError:
            raise
        except (SwarmError, OSError) as exc:
            m.error = str(exc)
            m.reporter.event("error", message=f"{m.entry.name or m.entry.info_hash}: {exc}", fatal=True)
            log.warning("%s: %s", m.entry.name or m.entry.info_hash, exc)

    async def _pump(self, m: Managed, handle: TorrentHandle) -> None:
        async for kind, fields in handle.events():
            m.reporter.event(kind, **fields)

    async def _stop(self, m: Managed) -> None:
        for task in (m.task, m.pump):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        m.task = m.pump = None
        handle, m.handle = m.handle, None
        if handle is not None:
            m.last = handle.status()
            m.entry.verified = m.last.verified  # what a paused torrent shows after a restart
            with contextlib.suppress(Exception):
                await handle.flush()
            await self.session.remove_torrent(handle)

    async def _save(self) -> None:
        entries = [m.entry for m in self.torrents.values()]
        await asyncio.to_thread(self.store.save, entries)


def info_hash_v2_of(entry: Entry, meta: Metainfo | None) -> str | None:
    """The torrent's v2 hash in hex, from its metadata or else from its magnet's btmh."""
    if meta is not None:
        return meta.info_hash_v2_hex
    if entry.magnet is not None:
        from swarm.core.magnet import parse_magnet

        with contextlib.suppress(BadInput):
            v2 = parse_magnet(entry.magnet).info_hash_v2
            return None if v2 is None else v2.hex()
    return None


def resolve_under(root: Path, text: str) -> Path:
    """``text`` (absolute, or relative to ``root``) with every symlink resolved; BadInput if it
    cannot be a path (a NUL byte, too long, a symlink loop)."""
    try:
        return (root / text).resolve()
    except (ValueError, OSError, RuntimeError) as exc:
        raise BadInput(f"{text!r}: not a usable path: {exc}") from None


def delete_files(root: Path, meta: Metainfo) -> None:
    """Remove the torrent's files under ``root`` (never through a symlink), then its emptied directories."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        log.warning("%s: cannot delete data: %s", root, exc.strerror)
        return
    dirs: set[tuple[str, ...]] = set()
    try:
        for f in meta.files:
            if f.pad:
                continue
            fds: list[int] = []
            try:
                fd = root_fd
                for comp in f.path[:-1]:
                    fd = safefile.open_subdir(fd, comp, create=False)
                    fds.append(fd)
                os.unlink(f.path[-1], dir_fd=fd)
            except OSError:
                pass  # already gone, or behind a symlink: left alone
            finally:
                for fd in fds:
                    os.close(fd)
            for n in range(1, len(f.path)):
                dirs.add(f.path[:n])
        for d in sorted(dirs, key=len, reverse=True):
            with contextlib.suppress(OSError):  # not empty (other files) or not ours: kept
                parent = root_fd
                opened = []
                for comp in d[:-1]:
                    parent = safefile.open_subdir(parent, comp, create=False)
                    opened.append(parent)
                try:
                    os.rmdir(d[-1], dir_fd=parent)
                finally:
                    for fd in opened:
                        os.close(fd)
    finally:
        os.close(root_fd)

