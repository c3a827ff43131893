"""The streaming and scripting half of ``swarm get`` (issue 11), kept out of get.py.

``StreamExtras`` applies ``--sequential`` / ``--first-last`` to the torrent,
runs the ``--stdout`` streamer, the ``--http`` server and the ``--on-done``
hook next to the engine, and tells ``_get`` when to stop: a closed stdout
pipe stops the download (exit 0); a complete download waits for the stream
to be written out and the hook to finish before the command exits.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from typing import Any

from swarm.errors import BadInput

log = logging.getLogger("swarm.cli.stream")


class StreamExtras:
    def __init__(
        self, args: argparse.Namespace, handle: Any, reporter: Any, stop: asyncio.Event
    ) -> None:
        self.args = args
        self.handle = handle
        self.reporter = reporter
        self.stop = stop
        self.pipe_closed = False
        self.stdout_file: int | None = None
        self._streamer: asyncio.Task[str] | None = None
        self._hook: asyncio.Task[int | None] | None = None
        self._http: Any = None

    def configure(self) -> None:
        """Picker settings and --stdout's file; BadInput when --stdout has no single file."""
        a, h = self.args, self.handle
        if a.stall_after is not None:
            h.stall_after = max(0.0, a.stall_after)
        if a.stdout:
            files = [
                i for i in h.wanted_files() if h.metainfo.files[i].length > 0
            ] or h.wanted_files()
            if len(files) != 1:
                raise BadInput(
                    f"--stdout needs a single-file torrent or exactly one file chosen with --files "
                    f"({h.name} has {len(files)} wanted files)"
                )
            self.stdout_file = files[0]
        if a.sequential or a.stdout or a.http is not None:  # as main had it: --http streams in order too
            h.set_sequential(True)
        if a.first_last:
            h.prioritize_first_last()

    async def start(self) -> None:
        a, h = self.args, self.handle
        if self.stdout_file is not None:
            from swarm.stream import StdoutStreamer

            with contextlib.suppress(Exception):
                sys.stdout.flush()
            streamer = StdoutStreamer(h, self.stdout_file, sys.stdout.fileno())
            self._streamer = asyncio.ensure_future(streamer.run())
            self._streamer.add_done_callback(self._stream_done)
        if a.http is not None:
            from swarm.httpstream import StreamServer

            self._http = StreamServer(h, a.http_host, a.http)
            port = await self._http.start()
            self.reporter.event(
                "listening", host=a.http_host, port=port, service="http", url=self._http.url
            )
            if self.reporter.mode != "json":  # even with -q: the URL is what the user came for
                sys.stderr.write(f"swarm: streaming {h.name} on {self._http.url}\n")
                sys.stderr.flush()
        if a.on_done:
            from swarm.hooks import OnDone

            hook = OnDone(a.on_done, stdout_to_stderr=bool(a.stdout or a.json))
            self._hook = asyncio.ensure_future(hook.run_when_complete(h))

    def _stream_done(self, task: asyncio.Task[str]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.warning("--stdout: %s", exc)
            self.stop.set()
        elif task.result() == "closed":
            self.pipe_closed = True
            log.info("--stdout: the reader closed the pipe; stopping")
            self.stop.set()

    async def finish(self, complete: bool) -> None:
        """After ``drive``: let the stream drain and the hook run, unless stopped."""
        waits = [t for t in (self._streamer, self._hook) if t is not None and not t.done()]
        if not complete or not waits or self.stop.is_set():
            return
        stop_task = asyncio.ensure_future(self.stop.wait())
        try:
            pending = set(waits)
            while pending and not self.stop.is_set():
                done, pending = await asyncio.wait(
                    pending | {stop_task}, return_when=asyncio.FIRST_COMPLETED
                )
                pending.discard(stop_task)
        finally:
            stop_task.cancel()
        if self._streamer is not None and self._streamer.done() and not self._streamer.cancelled():
            exc = self._streamer.exception()
            if exc is not None:
                raise exc

    async def close(self) -> None:
        for task in (self._streamer, self._hook):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self._http is not None:
            await self._http.close()

