"""`swarm` subprocesses in tests: start them, read their --json events, find the seed's port."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


async def spawn_swarm(*args: str, cwd: Path, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``python -m swarm *args`` with stdout and stderr piped (ENV unless env is given)."""
    return await asyncio.create_subprocess_exec(
        *SWARM,
        *args,
        cwd=cwd,
        env=ENV if env is None else env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def kill_all(procs: list[asyncio.subprocess.Process]) -> None:
    """Kill and reap whichever of ``procs`` still runs (a test's ``finally``)."""
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)


async def assert_no_tracebacks(procs: list[asyncio.subprocess.Process]) -> None:
    """Every one of ``procs`` (ended) wrote no Python traceback to stderr."""
    for proc in procs:
        assert proc.stderr is not None
        err = (await asyncio.wait_for(proc.stderr.read(), 5)).decode()
        assert "Traceback" not in err, err


async def read_events(proc: asyncio.subprocess.Process, until: str, timeout: float) -> list[dict[str, Any]]:
    """JSON events from ``proc`` until one whose event is ``until`` (or EOF)."""
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {until!r} event in {timeout}s: {out[-3:]}"
        line = await asyncio.wait_for(proc.stdout.readline(), left)
        if not line:
            return out
        ev = json.loads(line)
        out.append(ev)
        if ev["event"] == until:
            return out


async def events_until(proc: asyncio.subprocess.Process, kind: str, timeout: float) -> list[dict[str, Any]]:
    """Like read_events, but the process ending first is a failure."""
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no {kind!r} event in {timeout}s: {out[-3:]}"
        line = await asyncio.wait_for(proc.stdout.readline(), left)
        assert line, f"process ended before {kind!r}: {out[-3:]}"
        ev = json.loads(line)
        out.append(ev)
        if ev.get("event") == kind:
            return out


def start_seed(cwd: Path, *args: str, timeout: float = 30) -> tuple[subprocess.Popen[str], int]:
    """``swarm seed *args --json`` (blocking); returns the process and the port it listens on."""
    proc = subprocess.Popen(
        [*SWARM, "seed", *args, "--json"],
        cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "seed exited"
        ev = json.loads(line)
        if ev["event"] == "listening":
            return proc, int(ev["port"])
    raise AssertionError("swarm seed did not start listening")


#: Loopback only, any port, no DHT/LSD: a test's swarm never sends a packet off the machine.
LOCAL_NET = ("--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd")


def swarm_get(source: str | Path, out: str | Path) -> list[str]:
    """argv of ``swarm get source -o out`` on LOCAL_NET; callers append their own options."""
    return [*SWARM, "get", str(source), "-o", str(out), *LOCAL_NET]
