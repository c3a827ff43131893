"""`swarm` subprocesses in tests: start them, read their --json events, find the seed's port."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
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


def start_json_seed(
    path: Path, cwd: Path, *args: str, timeout: float = 30.0
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """``swarm seed path --json *args`` (blocking); once it listens: the process, its
    port and the .torrent it wrote. Reads with ``select``, so a silent seed cannot
    outlast ``timeout``."""
    proc = subprocess.Popen(
        [*SWARM, "seed", str(path), "--json", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=ENV,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    port: int | None = None
    torrent: str | None = None
    buf = b""
    while port is None and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            obj = json.loads(line)
            if obj["event"] == "added":
                torrent = obj.get("torrent")
            elif obj["event"] == "listening":
                port = int(obj["port"])
    if port is None or torrent is None:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise AssertionError(f"seed did not start within {timeout}s: {buf!r} {err[-2000:]!r}")
    return proc, port, Path(torrent)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=5)


#: Loopback only, any port, no DHT/LSD: a test's swarm never sends a packet off the machine.
LOCAL_NET = ("--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd")


def swarm_get(source: str | Path, out: str | Path) -> list[str]:
    """argv of ``swarm get source -o out`` on LOCAL_NET; callers append their own options."""
    return [*SWARM, "get", str(source), "-o", str(out), *LOCAL_NET]
