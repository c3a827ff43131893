"""``swarm get --on-done CMD``: run a shell command once, when the download is complete.

It runs after every wanted piece is verified and the data files are fsynced
(so the command can read them), through ``/bin/sh -c CMD`` as a subprocess:
the engine keeps seeding meanwhile. Its environment carries
``SWARM_INFOHASH``, ``SWARM_NAME``, ``SWARM_PATH`` and ``SWARM_DOWNLOADED``
(payload bytes fetched in this run, 0 when the torrent was complete at
start). Its exit status is logged; it never changes swarm's exit code.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarm.session import TorrentHandle

log = logging.getLogger("swarm.hooks")


class OnDone:
    """Runs ``cmd`` at most once for one torrent."""

    def __init__(self, cmd: str, *, stdout_to_stderr: bool = False) -> None:
        self.cmd = cmd
        self.stdout_to_stderr = stdout_to_stderr
        self.returncode: int | None = None
        self._started = False

    def environment(self, handle: TorrentHandle) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SWARM_INFOHASH=handle.info_hash.hex(),
            SWARM_NAME=handle.name,
            SWARM_PATH=str((handle.save_path / handle.name).resolve()),
            SWARM_DOWNLOADED=str(handle.downloaded),
        )
        return env

    async def run_when_complete(self, handle: TorrentHandle) -> int | None:
        """Wait for completion, flush, run; the command's exit status (None if it never ran)."""
        await handle.wait_complete()
        if not handle.is_complete():
            return None
        await handle.flush()
        return await self.run(handle)

    async def run(self, handle: TorrentHandle) -> int | None:
        if self._started:
            return None
        self._started = True
        env = self.environment(handle)
        # With --stdout or --json our stdout belongs to the data or the event stream.
        out = sys.stderr.fileno() if self.stdout_to_stderr else None
        log.info("on-done: running %r", self.cmd)
        try:
            proc = await asyncio.create_subprocess_shell(
                self.cmd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=out
            )
        except OSError as exc:
            log.warning("on-done: cannot run %r: %s", self.cmd, exc.strerror or exc)
            self.returncode = 127
            return self.returncode
        self.returncode = await proc.wait()
        if self.returncode == 0:
            log.info("on-done: %r exited 0", self.cmd)
        else:
            log.warning("on-done: %r exited with status %d", self.cmd, self.returncode)
        return self.returncode
