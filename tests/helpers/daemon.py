"""`swarm daemon` as a subprocess for tests: start it, learn its API URL and peer port, stop it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from tests.helpers.procs import spawn_swarm

LOCAL = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd")


class DaemonProc:
    def __init__(self, proc: asyncio.subprocess.Process, url: str, peer_port: int) -> None:
        self.proc = proc
        self.url = url
        self.peer_port = peer_port

    async def stop(self) -> int:
        if self.proc.returncode is None:
            self.proc.terminate()
        return await asyncio.wait_for(self.proc.wait(), 20)

    async def kill9(self) -> None:
        self.proc.kill()
        await asyncio.wait_for(self.proc.wait(), 10)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), 10)).decode()


async def start_daemon(root: Path, *args: str, cwd: Path | None = None, timeout: float = 30) -> DaemonProc:
    """``swarm daemon -o root --api 127.0.0.1:0 --json *args`` on loopback; returns once its API listens."""
    proc = await spawn_swarm(
        "daemon", "-o", str(root), "--api", "127.0.0.1:0", "--json", *LOCAL, *args, cwd=cwd or root
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    port = None
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "daemon did not start"
        line = await asyncio.wait_for(proc.stdout.readline(), left)
        if not line:
            assert proc.stderr is not None
            raise AssertionError(f"daemon exited: {(await proc.stderr.read()).decode()[-2000:]}")
        ev = json.loads(line)
        if ev["event"] == "listening":
            port = int(ev["port"])
        if ev["event"] == "api":
            assert port is not None
            return DaemonProc(proc, ev["url"], port)


@asynccontextmanager
async def daemon(root: Path, *args: str) -> AsyncIterator[DaemonProc]:
    d = await start_daemon(root, *args)
    try:
        yield d
    finally:
        if d.proc.returncode is None:
            await d.stop()


async def poll_torrent(
    http: aiohttp.ClientSession, url: str, ih: str, want: str, timeout: float = 60, **headers: str
) -> dict[str, Any]:
    """GET the torrent until its state is ``want``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        async with http.get(f"{url}/api/torrents/{ih}", headers=headers) as r:
            assert r.status == 200, await r.text()
            obj = await r.json()
        if obj["state"] == want:
            return obj
        await asyncio.sleep(0.1)
    raise AssertionError(f"{ih} not {want} within {timeout}s: {obj}")
