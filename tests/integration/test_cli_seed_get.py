"""`swarm seed` / `swarm get` as subprocesses: exit codes, output, kill -9 and resume."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import IN_CI
from test_engine_fakepeer import FakeSeed, file_server

from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.procs import ENV, SWARM, read_events

#: Loopback only, no DHT/LSD: a test never sends a packet off the machine.
QUIET = ("--host", "127.0.0.1", "--no-dht", "--no-lsd")


def run_cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SWARM, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV
    )


def make_payload(tmp_path: Path, size: int, piece_length: int) -> tuple[bytes, Path, bytes]:
    payload = os.urandom(size)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", piece_length=piece_length)
    tfile = tmp_path / "f.bin.torrent"
    tfile.write_bytes(data)
    return payload, tfile, data


def test_get_bad_inputs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.torrent"
    bad.write_bytes(b"d4:infoi3ee")
    r = run_cli("get", str(bad), "-o", str(tmp_path), "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "bad.torrent" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("get", str(tmp_path / "missing.torrent"), "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2
    r = run_cli("get", "magnet:?xt=urn:btih:zz", "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_get_missing_or_readonly_output_dir(tmp_path: Path) -> None:
    _, tfile, _ = make_payload(tmp_path, 100_000, 16384)
    (tmp_path / "afile").write_bytes(b"")  # a missing DIR is created, but not under a file
    r = run_cli("get", str(tfile), "-o", str(tmp_path / "afile" / "nope"), "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "nope" in r.stderr and "cannot create" in r.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores modes: make it a file path instead
            ro.chmod(0o700)
            ro.rmdir()
            ro.write_bytes(b"")
        r = run_cli("get", str(tfile), "-o", str(ro), "--port", "0", *QUIET, cwd=tmp_path)
        assert r.returncode == 1 and "Traceback" not in r.stderr and r.stderr.strip()
    finally:
        if ro.is_dir():
            ro.chmod(0o700)


def test_get_bad_peer_option(tmp_path: Path) -> None:
    _, tfile, _ = make_payload(tmp_path, 100_000, 16384)
    r = run_cli("get", str(tfile), "--peer", "nohostport", "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2 and "--peer" in r.stderr


async def test_seed_then_get_subprocesses(tmp_path: Path) -> None:
    payload = os.urandom(700_000)
    (tmp_path / "share.bin").write_bytes(payload)
    seed = await asyncio.create_subprocess_exec(
        *SWARM, "seed", "share.bin", "--host", "127.0.0.1", "--port", "0", "--json",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    try:
        events = await read_events(seed, "listening", 20)
        added = next(e for e in events if e["event"] == "added")
        port = next(e for e in events if e["event"] == "listening")["port"]
        assert (tmp_path / "share.bin.torrent").is_file()
        assert added["torrent"] == str(tmp_path / "share.bin.torrent")
        assert f"x.pe=127.0.0.1:{port}" in str(added["magnet"])
        out = tmp_path / "out"
        out.mkdir()
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", "share.bin.torrent", "-o", "out", "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}", "--json",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        gevents = await read_events(get, "summary", 30)
        assert await asyncio.wait_for(get.wait(), 10) == 0
        assert any(e["event"] == "done" for e in gevents)
        assert (out / "share.bin").read_bytes() == payload
    finally:
        seed.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(seed.wait(), 10)
    assert rc == 0


async def _start_get(tmp_path: Path, tfile: Path, port: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *SWARM, "get", str(tfile), "-o", "out", "--port", "0", "--host", "127.0.0.1",
        "--peer", f"127.0.0.1:{port}", "--json",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )


async def _until_pieces(proc: asyncio.subprocess.Process, n: int, timeout: float) -> int:
    assert proc.stdout is not None
    verified = 0
    deadline = time.monotonic() + timeout
    while verified < n:
        left = deadline - time.monotonic()
        assert left > 0, "download did not progress"
        line = await asyncio.wait_for(proc.stdout.readline(), left)
        assert line, "get exited early"
        ev = json.loads(line)
        if ev["event"] == "piece" and ev.get("action") == "verified":
            verified += 1
    return verified


async def test_kill_9_then_resume_fetches_only_the_rest(tmp_path: Path) -> None:
    payload, tfile, data = make_payload(tmp_path, 2 * 1024 * 1024, 32768)
    meta = parse_metainfo(data)
    slow = FakeSeed(meta, file_server(meta, payload), delay=0.004)  # ~4 MiB/s
    port = await slow.start()
    (tmp_path / "out").mkdir()
    try:
        get = await _start_get(tmp_path, tfile, port)
        await _until_pieces(get, 12, 30)
        get.kill()
        assert await asyncio.wait_for(get.wait(), 10) == -signal.SIGKILL
        assert (tmp_path / "out" / "f.bin").read_bytes() != payload
        slow.delay = 0.0
        get = await _start_get(tmp_path, tfile, port)
        events = await read_events(get, "summary", 30)
        assert await asyncio.wait_for(get.wait(), 10) == 0
    finally:
        await slow.close()
    summary = events[-1]
    assert summary["complete"] is True
    downloaded = summary["downloaded"]
    assert isinstance(downloaded, int)
    assert 0 < downloaded <= meta.total_length - 12 * meta.piece_length
    assert (tmp_path / "out" / "f.bin").read_bytes() == payload


async def test_ctrl_c_saves_resume_and_exits_130(tmp_path: Path) -> None:
    payload, tfile, data = make_payload(tmp_path, 1024 * 1024, 32768)
    meta = parse_metainfo(data)
    slow = FakeSeed(meta, file_server(meta, payload), delay=0.01)
    port = await slow.start()
    (tmp_path / "out").mkdir()
    try:
        get = await _start_get(tmp_path, tfile, port)
        await _until_pieces(get, 3, 30)
        get.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(get.wait(), 15) == 130
    finally:
        await slow.close()
    resume = tmp_path / "out" / ".swarm" / f"{meta.info_hash.hex()}.resume"
    assert resume.is_file()


@pytest.mark.parametrize("serve", [["--seed"], ["--http", "0"]], ids=["seed", "http"])
@pytest.mark.parametrize("when", ["after", "before"])
async def test_ctrl_c_exit_code_while_serving(tmp_path: Path, serve: list[str], when: str) -> None:
    """get --seed / --http: Ctrl-C after completion is a clean stop (0), before it 130."""
    payload, tfile, data = make_payload(tmp_path, 1024 * 1024, 32768)
    meta = parse_metainfo(data)
    slow = FakeSeed(meta, file_server(meta, payload), delay=0.01 if when == "before" else 0.0)
    port = await slow.start()
    (tmp_path / "out").mkdir()
    try:
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", "out", "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}", "--no-dht", "--no-lsd", "--json", *serve,
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        if when == "after":
            assert (await read_events(get, "done", 30))[-1]["event"] == "done"
        else:
            await _until_pieces(get, 3, 30)
        get.send_signal(signal.SIGINT)
        rc = await asyncio.wait_for(get.wait(), 15)
    finally:
        await slow.close()
    assert rc == (0 if when == "after" else 130)
    if when == "after":
        assert (tmp_path / "out" / "f.bin").read_bytes() == payload


async def test_get_magnet_from_swarm_seed(tmp_path: Path) -> None:
    """The magnet `swarm seed` prints (with x.pe) is enough for `swarm get`."""
    payload = os.urandom(300_000)
    (tmp_path / "m.bin").write_bytes(payload)
    seed = await asyncio.create_subprocess_exec(
        *SWARM, "seed", "m.bin", "--host", "127.0.0.1", "--port", "0", "--json",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    try:
        events = await read_events(seed, "listening", 20)
        magnet = str(next(e for e in events if e["event"] == "added")["magnet"])
        out = tmp_path / "out"
        out.mkdir()
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", magnet, "-o", "out", "--port", "0", "--host", "127.0.0.1", "--json",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        gevents = await read_events(get, "summary", 30)
        assert await asyncio.wait_for(get.wait(), 10) == 0
        assert any(e["event"] == "metadata" for e in gevents)
        assert (out / "m.bin").read_bytes() == payload
        written = parse_metainfo((out / "m.bin.torrent").read_bytes())
        assert written.info_hash == parse_metainfo((tmp_path / "m.bin.torrent").read_bytes()).info_hash
    finally:
        seed.send_signal(signal.SIGTERM)
        await asyncio.wait_for(seed.wait(), 10)


def test_magnet_without_peers_fails_cleanly(tmp_path: Path) -> None:
    r = run_cli(
        "get", "magnet:?xt=urn:btih:" + "ab" * 20, "-o", str(tmp_path), "--port", "0",
        "--host", "127.0.0.1", "--peer", "127.0.0.1:1", cwd=tmp_path, timeout=30,
    )
    assert r.returncode == 1 and "metadata" in r.stderr and "Traceback" not in r.stderr


async def test_on_done_runs_once_with_environment(tmp_path: Path) -> None:
    payload, tfile, data = make_payload(tmp_path, 400_000, 16384)
    meta = parse_metainfo(data)
    seed = FakeSeed(meta, file_server(meta, payload))
    port = await seed.start()
    (tmp_path / "out").mkdir()
    try:
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", "out", "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}", "--sequential", "--first-last", "-q",
            "--on-done", 'echo "$SWARM_NAME $SWARM_INFOHASH $SWARM_DOWNLOADED $SWARM_PATH" >> done.txt',
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        assert await asyncio.wait_for(get.wait(), 30) == 0
    finally:
        await seed.close()
    lines = (tmp_path / "done.txt").read_text().splitlines()
    assert lines == [f"f.bin {meta.info_hash.hex()} {len(payload)} {tmp_path / 'out' / 'f.bin'}"]
    assert (tmp_path / "out" / "f.bin").read_bytes() == payload


async def test_stdout_streams_the_file_in_order(tmp_path: Path) -> None:
    payload, tfile, data = make_payload(tmp_path, 500_000, 16384)
    meta = parse_metainfo(data)
    seed = FakeSeed(meta, file_server(meta, payload))
    port = await seed.start()
    (tmp_path / "out").mkdir()
    try:
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", "out", "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}", "--stdout", "--json",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        stdout, stderr = await asyncio.wait_for(get.communicate(), 30)
    finally:
        await seed.close()
    assert get.returncode == 0, stderr
    assert stdout == payload
    assert b'"event":"done"' in stderr


async def test_disk_full_is_one_line_and_exit_1(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        if IN_CI:
            pytest.fail("CI runs as root with mount: this test must run there")
        pytest.skip("needs root to mount a tiny tmpfs")
    payload, tfile, data = make_payload(tmp_path, 3 * 1024 * 1024, 32768)
    meta = parse_metainfo(data)
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True, timeout=10)
    seed = FakeSeed(meta, file_server(meta, payload))
    port = await seed.start()
    try:
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", str(tiny), "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        _, err = await asyncio.wait_for(get.communicate(), 30)
    finally:
        await seed.close()
        subprocess.run(["umount", str(tiny)], check=False, timeout=10)
    assert get.returncode == 1
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("swarm: error:") and "disk full" in lines[0], lines


async def test_seed_with_existing_torrent_verifies_the_data(tmp_path: Path) -> None:
    payload, tfile, _ = make_payload(tmp_path, 200_000, 16384)
    path = tmp_path / "src" / "f.bin"
    # a byte changed on disk: seed what still matches, say so, keep running
    broken = bytearray(payload)
    broken[5] ^= 0xFF
    path.write_bytes(bytes(broken))
    seed = await asyncio.create_subprocess_exec(
        *SWARM, "seed", str(path), "--torrent", str(tfile), "--host", "127.0.0.1", "--port", "0",
        "--json", cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
    )
    try:
        events = await read_events(seed, "listening", 20)
        added = next(e for e in events if e["event"] == "added")
        assert added["torrent"] == str(tfile)
        events += await read_events(seed, "error", 10)
        errors = [e for e in events if e["event"] == "error"]
        assert errors and errors[0]["fatal"] is False and "match" in str(errors[0]["message"])
    finally:
        seed.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(seed.wait(), 10) == 0
    r = run_cli("seed", str(tmp_path / "src"), "--torrent", str(tfile), "--port", "0", *QUIET, cwd=tmp_path)
    assert r.returncode == 2 and "f.bin" in r.stderr  # the torrent is for another name


async def test_handle_events_and_status(tmp_path: Path) -> None:
    from swarm import Session

    payload, tfile, data = make_payload(tmp_path, 300_000, 16384)
    meta = parse_metainfo(data)
    fake = FakeSeed(meta, file_server(meta, payload))
    port = await fake.start()
    out = tmp_path / "out"
    out.mkdir()
    seen: list[tuple[str, dict[str, object]]] = []
    try:
        async with Session("127.0.0.1", 0) as s:
            h = await s.add_torrent(tfile, out)
            events = h.events()

            async def collect() -> None:
                async for kind, fields in events:
                    seen.append((kind, fields))
                    if kind == "done":
                        return

            task = asyncio.ensure_future(collect())
            h.add_peer("127.0.0.1", port)
            await asyncio.wait_for(task, 20)
            st = h.status()
    finally:
        await fake.close()
    kinds = [k for k, _ in seen]
    assert kinds[0] == "peer" and kinds[-1] == "done"
    assert sum(1 for k, f in seen if k == "piece" and f["action"] == "verified") == meta.num_pieces
    assert st.state == "seeding" and st.progress == 1.0 and st.downloaded == meta.total_length
    assert st.piece_map and set(st.piece_map) == {"#"}
    assert st.peers == () or all(p.address.startswith("127.0.0.1:") for p in st.peers)


async def test_http_streams_ranges_while_downloading(tmp_path: Path) -> None:
    import urllib.request

    payload, tfile, data = make_payload(tmp_path, 600_000, 16384)
    meta = parse_metainfo(data)
    slow = FakeSeed(meta, file_server(meta, payload), delay=0.002)
    port = await slow.start()
    (tmp_path / "out").mkdir()
    try:
        get = await asyncio.create_subprocess_exec(
            *SWARM, "get", str(tfile), "-o", "out", "--port", "0", "--host", "127.0.0.1",
            "--peer", f"127.0.0.1:{port}", "--http", "0", "-q",
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV,
        )
        assert get.stderr is not None
        line = (await asyncio.wait_for(get.stderr.readline(), 20)).decode()
        assert "http://127.0.0.1:" in line, line
        base = line.split("on ", 1)[1].strip()

        def fetch(rng: str | None) -> tuple[int, bytes]:
            req = urllib.request.Request(base + "f.bin", headers={"Range": rng} if rng else {})
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.read()

        status, body = await asyncio.to_thread(fetch, "bytes=100000-299999")
        assert status == 206 and body == payload[100000:300000]
        status, body = await asyncio.to_thread(fetch, None)
        assert status == 200 and body == payload
        get.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(get.wait(), 15) == 0  # complete, then stopped
    finally:
        await slow.close()
