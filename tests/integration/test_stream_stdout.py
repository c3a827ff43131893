"""`swarm get --stdout`: the file's bytes in order on stdout, everything else on stderr."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from stream_peers import ScriptedSeed, make_torrent

from tests.helpers.procs import swarm_get

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start_get(tfile: Path, out: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    out.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            *swarm_get(tfile, out),
            "--peer",
            f"127.0.0.1:{port}",
            "--stdout",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )


async def finish(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, str]:
    """Exit code and stderr, killing the process if it outlives ``timeout``."""
    try:
        _, err = await asyncio.to_thread(proc.communicate, None, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = await asyncio.to_thread(proc.communicate)
        raise AssertionError(
            f"swarm get did not exit in {timeout}s: {err.decode()[-2000:]}"
        ) from None
    return proc.returncode, err.decode()


async def test_stdout_matches_the_file(tmp_path: Path) -> None:
    payload, tfile, meta = make_torrent(tmp_path, 3 * 1024 * 1024 + 123, 32768)
    async with ScriptedSeed(meta, payload, reqq=16, rate=4 << 20) as seed:
        proc = start_get(tfile, tmp_path / "out", seed.port, "--first-last")
        assert proc.stdout is not None
        got = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read), 30)
        code, err = await finish(proc, 15)
    assert code == 0, err
    assert "Traceback" not in err
    assert len(got) == len(payload)
    assert hashlib.sha1(got).hexdigest() == hashlib.sha1(payload).hexdigest()
    assert "complete" in err  # the human output went to stderr


async def test_slow_reader_does_not_stall_the_download(tmp_path: Path) -> None:
    """Nobody reads stdout until the download is done on disk; then every byte still arrives."""
    size = 4 * 1024 * 1024  # far more than a pipe buffer
    payload, tfile, meta = make_torrent(tmp_path, size, 65536)
    out = tmp_path / "out"
    async with ScriptedSeed(meta, payload, reqq=32) as seed:
        proc = start_get(tfile, out, seed.port, "--json")
        assert proc.stderr is not None and proc.stdout is not None
        deadline = time.monotonic() + 30
        events: list[dict[str, object]] = []
        while not any(e.get("event") == "done" for e in events):
            left = deadline - time.monotonic()
            assert left > 0, f"no done event: {events[-3:]}"
            line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), left)
            assert line, "stderr closed before done"
            if line.startswith(b"{"):
                events.append(json.loads(line))
        # complete on disk while the reader has consumed nothing
        assert (out / "f.bin").read_bytes() == payload
        assert proc.poll() is None  # still waiting for the reader
        got = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read), 30)
        code, err = await finish(proc, 15)
    assert code == 0, err
    assert got == payload


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


async def test_slow_reader_memory_is_bounded(tmp_path: Path) -> None:
    """160 MiB downloaded while the reader takes nothing: the process does not hold it in memory."""
    size = 160 * 1024 * 1024
    payload, tfile, meta = make_torrent(tmp_path, size, 1024 * 1024)
    out = tmp_path / "out"
    async with ScriptedSeed(meta, payload, reqq=250) as seed:
        proc = start_get(tfile, out, seed.port, "--json")
        assert proc.stderr is not None and proc.stdout is not None
        deadline = time.monotonic() + 60
        while True:
            left = deadline - time.monotonic()
            assert left > 0, "no done event"
            line = await asyncio.wait_for(asyncio.to_thread(proc.stderr.readline), left)
            assert line, "stderr closed before done"
            if line.startswith(b'{"event":"done"'):
                break
        peak = vm_hwm_kib(proc.pid)
        digest = hashlib.sha1()
        while chunk := await asyncio.to_thread(proc.stdout.read, 1 << 20):
            digest.update(chunk)
        code, err = await finish(proc, 30)
    assert code == 0, err
    assert digest.digest() == hashlib.sha1(payload).digest()
    assert peak < 120 * 1024, f"peak RSS {peak} KiB while the reader was idle"


async def test_closed_pipe_ends_the_download_cleanly(tmp_path: Path) -> None:
    size = 8 * 1024 * 1024
    payload, tfile, meta = make_torrent(tmp_path, size, 32768)
    # 512 KiB/s: the whole file would take 16 s; we hang up after the first 100 kB
    async with ScriptedSeed(meta, payload, reqq=16, rate=512 * 1024) as seed:
        proc = start_get(tfile, tmp_path / "out", seed.port)
        assert proc.stdout is not None
        head = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read, 100_000), 20)
        assert head == payload[:100_000]
        proc.stdout.close()
        t0 = time.monotonic()
        code, err = await finish(proc, 10)
    assert code == 0, err
    assert "Traceback" not in err
    assert time.monotonic() - t0 < 8
    assert len(seed.served) * 16384 < size  # it stopped before downloading everything


async def test_stdout_with_one_file_of_several(tmp_path: Path) -> None:
    """Several files: refused (exit 2) unless --files picks exactly one, which then streams."""
    from swarm.core.metainfo import parse_metainfo
    from swarm.create import create_torrent

    d = tmp_path / "d"
    d.mkdir()
    a, b = os.urandom(50_000), os.urandom(70_000)
    (d / "a").write_bytes(a)
    (d / "b").write_bytes(b)
    data = create_torrent(d, piece_length=16384)
    tfile = tmp_path / "d.torrent"
    tfile.write_bytes(data)
    meta = parse_metainfo(data)
    proc = start_get(tfile, tmp_path / "out", 9)
    code, err = await finish(proc, 15)
    assert code == 2 and "--stdout" in err and "Traceback" not in err
    async with ScriptedSeed(meta, a + b, reqq=8) as seed:
        proc = start_get(tfile, tmp_path / "out", seed.port, "--files", "b")
        assert proc.stdout is not None
        got = await asyncio.wait_for(asyncio.to_thread(proc.stdout.read), 30)
        code, err = await finish(proc, 15)
    assert code == 0, err
    assert got == b
