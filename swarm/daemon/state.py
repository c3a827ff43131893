"""What `swarm daemon` keeps in ``DIR/.swarm-daemon/`` so a restart (even after ``kill -9``)
brings every torrent back: ``state.json`` (which torrents, their options, paused or not)
and ``torrents/IH.torrent`` (each torrent's metainfo).

Every file is written to a temp file, fsynced and renamed into place
(``swarm.safefile``), so a crash leaves the old or the new version, never half
of one. Nothing is followed through a symlink.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from swarm import safefile
from swarm.errors import StorageError

log = logging.getLogger("swarm.daemon")

STATE_DIR = ".swarm-daemon"
STATE_FILE = "state.json"
TORRENTS_DIR = "torrents"
#: Far above any real state (a line per torrent); a larger file is not ours.
MAX_STATE = 64 * 1024 * 1024
MAX_TORRENT = 64 * 1024 * 1024


@dataclass
class Entry:
    """One torrent of the daemon and the options it was added with."""

    info_hash: str  # hex, the API's IH
    dir: str  # absolute directory the data is in (its parent for a shared path)
    name: str = ""
    files: list[str] | None = None  # globs of the files wanted (None: all)
    sequential: bool = False
    paused: bool = False
    seed: bool = False  # a shared local path: served, never written
    magnet: str | None = None  # until its metadata is known
    verified: int = 0  # wanted bytes verified when it last stopped (shown while paused)
    added_at: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, obj: Any) -> Entry:
        if not isinstance(obj, dict):
            raise ValueError("not an object")
        known = {k: obj[k] for k in cls.__dataclass_fields__ if k in obj}
        entry = cls(**known)
        if not (isinstance(entry.info_hash, str) and len(entry.info_hash) in (40, 64)):
            raise ValueError("bad info_hash")
        int(entry.info_hash, 16)
        if not isinstance(entry.dir, str) or not os.path.isabs(entry.dir):
            raise ValueError("dir is not an absolute path")
        if entry.files is not None and not (
            isinstance(entry.files, list) and all(isinstance(g, str) for g in entry.files)
        ):
            raise ValueError("files is not a list of strings")
        if not isinstance(entry.verified, int) or entry.verified < 0:
            entry.verified = 0
        if not isinstance(entry.name, str):
            entry.name = ""
        return entry


class StateStore:
    """``DIR/.swarm-daemon/``: load once at start, save after every change."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.path = root / STATE_DIR
        try:
            root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                state_fd = safefile.open_subdir(root_fd, STATE_DIR, create=True)
                os.close(safefile.open_subdir(state_fd, TORRENTS_DIR, create=True))
                os.close(state_fd)
            finally:
                os.close(root_fd)
        except OSError as exc:
            raise StorageError(f"{self.path}: cannot use as the daemon's state directory: {exc.strerror or exc}") from None

    def _open(self, *sub: str) -> int:
        fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in (STATE_DIR, *sub):
                inner = safefile.open_subdir(fd, name, create=False)
                os.close(fd)
                fd = inner
        except BaseException:
            os.close(fd)
            raise
        return fd

    def load(self) -> list[Entry]:
        """The saved entries; an unreadable state file is kept aside as ``state.json.bad``, logged."""
        fd = self._open()
        try:
            data = safefile.read_small(fd, STATE_FILE, MAX_STATE)
            if data is None:
                return []
            try:
                obj = json.loads(data)
                entries = [Entry.from_json(e) for e in obj["torrents"]]
            except (ValueError, KeyError, TypeError) as exc:
                log.error("%s: unreadable (%s); starting empty, kept as %s.bad", self.path / STATE_FILE, exc, STATE_FILE)
                safefile.write_atomic(fd, STATE_FILE + ".bad", data, replace=True)
                return []
            return entries
        finally:
            os.close(fd)

    def save(self, entries: list[Entry]) -> None:
        data = json.dumps({"version": 1, "torrents": [asdict(e) for e in entries]}, indent=1).encode()
        fd = self._open()
        try:
            safefile.write_atomic(fd, STATE_FILE, data, replace=True)
        finally:
            os.close(fd)

    def save_torrent(self, info_hash: str, data: bytes) -> None:
        fd = self._open(TORRENTS_DIR)
        try:
            safefile.write_atomic(fd, f"{info_hash}.torrent", data, replace=True)
        finally:
            os.close(fd)

    def load_torrent(self, info_hash: str) -> bytes | None:
        fd = self._open(TORRENTS_DIR)
        try:
            return safefile.read_small(fd, f"{info_hash}.torrent", MAX_TORRENT)
        finally:
            os.close(fd)

    def remove_torrent(self, info_hash: str) -> None:
        fd = self._open(TORRENTS_DIR)
        try:
            os.unlink(f"{info_hash}.torrent", dir_fd=fd)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)

    def resume_dir(self) -> Path:
        """Where seeds' resume data goes (Session.state_dir)."""
        return self.path
