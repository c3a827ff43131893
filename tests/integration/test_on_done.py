"""`swarm get --on-done CMD`: runs once when complete, with the SWARM_* environment."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from pathlib import Path

from stream_peers import ScriptedSeed, make_torrent

from tests.helpers.procs import swarm_get

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def get_cmd(tfile: Path, out: Path, *extra: str) -> list[str]:
    return [
        *swarm_get(tfile, out),
        *extra,
    ]


async def run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, cmd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def read_env(marker: Path) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in marker.read_text().splitlines() if line.startswith("SWARM_")
    )


HOOK = 'env | grep ^SWARM_ >> {m}; echo ran >> {m}.count; cat "$SWARM_PATH" | wc -c > {m}.size'


async def test_on_done_after_a_download(tmp_path: Path) -> None:
    payload, tfile, meta = make_torrent(tmp_path, 500_000, 16384)
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "marker"
    async with ScriptedSeed(meta, payload, reqq=16) as seed:
        r = await run(
            get_cmd(
                tfile, out, "--peer", f"127.0.0.1:{seed.port}", "--on-done", HOOK.format(m=marker)
            )
        )
    assert r.returncode == 0, r.stderr
    env = read_env(marker)
    assert env["SWARM_INFOHASH"] == meta.info_hash.hex()
    assert env["SWARM_NAME"] == "f.bin"
    assert Path(env["SWARM_PATH"]) == (out / "f.bin").resolve()
    assert int(env["SWARM_DOWNLOADED"]) >= len(payload)
    assert (tmp_path / "marker.count").read_text() == "ran\n"  # once
    assert (tmp_path / "marker.size").read_text().strip() == str(
        len(payload)
    )  # data there when it ran


async def test_on_done_for_a_torrent_complete_at_start(tmp_path: Path) -> None:
    payload, tfile, _meta = make_torrent(tmp_path, 200_000, 16384)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(tmp_path / "src" / "f.bin", out / "f.bin")
    marker = tmp_path / "marker"
    r = await run(get_cmd(tfile, out, "--on-done", HOOK.format(m=marker)))
    assert r.returncode == 0, r.stderr
    env = read_env(marker)
    assert env["SWARM_DOWNLOADED"] == "0"
    assert (tmp_path / "marker.count").read_text() == "ran\n"


async def test_a_failing_hook_does_not_change_the_exit_code(tmp_path: Path) -> None:
    payload, tfile, _meta = make_torrent(tmp_path, 100_000, 16384)
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(tmp_path / "src" / "f.bin", out / "f.bin")
    r = await run(get_cmd(tfile, out, "--on-done", "echo hook-output; exit 7", "--json"))
    assert r.returncode == 0, r.stderr
    assert "exited with status 7" in r.stderr
    # with --json the hook's stdout goes to stderr: stdout stays pure JSON
    assert "hook-output" in r.stderr
    assert all(line.startswith("{") for line in r.stdout.splitlines())


async def test_hook_not_run_when_incomplete(tmp_path: Path) -> None:
    """Stopped before completion (SIGTERM): the hook never runs."""
    payload, tfile, meta = make_torrent(tmp_path, 300_000, 16384)
    out = tmp_path / "out"
    out.mkdir()
    marker = tmp_path / "marker"
    async with ScriptedSeed(meta, payload, unchoke=False) as seed:
        proc = subprocess.Popen(
            get_cmd(
                tfile,
                out,
                "--peer",
                f"127.0.0.1:{seed.port}",
                "--on-done",
                f"touch {marker}",
                "--json",
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=ENV,
        )
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 15)
        assert b"added" in line
        proc.terminate()
        await asyncio.to_thread(proc.communicate, None, 15)
    assert proc.returncode == 1
    assert not marker.exists()
