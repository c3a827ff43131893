"""``--watch DIR``: every ``*.torrent`` that appears there is added, then renamed
``NAME.torrent.added``; one that cannot be added is renamed ``NAME.torrent.invalid``
and logged.

The folder is polled (no inotify dependency, works on network shares); a file
is taken only once its size has stayed the same over two polls, so a .torrent
still being copied in is not read half-written.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from swarm.errors import SwarmError

from .core import AddOptions, Conflict, Daemon
from .state import MAX_TORRENT

log = logging.getLogger("swarm.daemon")

POLL = 0.5


class WatchFolder:
    def __init__(self, daemon: Daemon, folder: Path, poll: float = POLL) -> None:
        self.daemon = daemon
        self.folder = folder
        self.poll = poll
        self._sizes: dict[str, int] = {}
        self._stuck: set[str] = set()  # taken but could not be renamed: not taken again

    async def run(self) -> None:
        while True:
            try:
                await self.scan()
            except OSError as exc:
                log.warning("%s: cannot read the watch folder: %s", self.folder, exc.strerror or exc)
            await asyncio.sleep(self.poll)

    async def scan(self) -> None:
        sizes: dict[str, int] = {}
        for entry in await asyncio.to_thread(lambda: list(os.scandir(self.folder))):
            if (
                not entry.name.endswith(".torrent")
                or entry.name in self._stuck
                or not entry.is_file(follow_symlinks=False)
            ):
                continue
            size = entry.stat(follow_symlinks=False).st_size
            if self._sizes.get(entry.name) == size:
                await self.take(Path(entry.path))
            else:
                sizes[entry.name] = size
        self._sizes = sizes

    async def take(self, path: Path) -> None:
        """Add one .torrent, then rename it ``.added`` (or ``.invalid``, logged)."""
        try:
            data = await asyncio.to_thread(_read, path)
            await self.daemon.add_torrent_bytes(data, AddOptions())
            suffix = ".added"
        except Conflict:
            suffix = ".added"  # already there: nothing to do twice
        except (SwarmError, OSError) as exc:
            log.error("%s: cannot add: %s", path, exc)
            suffix = ".invalid"
        try:
            os.replace(path, path.with_name(path.name + suffix))
        except OSError as exc:
            log.error("%s: cannot rename to %s: %s", path, suffix, exc.strerror or exc)
            self._stuck.add(path.name)


def _read(path: Path) -> bytes:
    with open(path, "rb") as fh:  # a regular file, checked by scan (no symlink)
        data = fh.read(MAX_TORRENT + 1)
    if len(data) > MAX_TORRENT:
        raise SwarmError(f"larger than {MAX_TORRENT} bytes; not a .torrent")
    return data
