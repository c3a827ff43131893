"""Interop with aria2c (a second, independent BitTorrent implementation), on 127.0.0.1.

* aria2c leeches from `swarm seed`: aria2c cannot be given a peer on its
  command line, so the torrent names a swarm tracker (in-process, 127.0.0.1)
  that both announce to.
* `swarm get` leeches from an aria2c seed (`-V --seed-ratio=0.0` over the
  finished file), given to swarm with --peer.

aria2c runs with DHT, LPD and PEX off, bound to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool

from swarm.create import create_torrent
from tests.helpers.aria2 import aria2_args, free_port
from tests.helpers.procs import events_until, spawn_swarm
from tracker.app import COUNTERS_KEY

pytestmark = pytest.mark.interop

NET = ["--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd"]
SIZE = 3 * 1024 * 1024 + 4321
PIECE = 65536


async def wait_listening(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1)
        except (OSError, TimeoutError):
            assert time.monotonic() < deadline, f"nothing listens on {port} after {timeout}s"
            await asyncio.sleep(0.05)
            continue
        w.close()
        return


async def stop(proc: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> int:
    if proc.returncode is None:
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await asyncio.wait_for(proc.wait(), 10)
    assert proc.returncode is not None
    return proc.returncode


async def aria2c_fetch(
    aria2c: str, source: str, cwd: Path, timeout: float, extra: tuple[str, ...] = ()
) -> Path:
    """aria2c downloads ``source`` (a .torrent or a magnet) into ``cwd/out`` and exits 0."""
    out = cwd / "out"
    out.mkdir()
    aria = await asyncio.create_subprocess_exec(
        *aria2_args(aria2c, free_port()),
        *extra,
        "--seed-time=0",
        f"--dir={out}",
        source,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        aout, _ = await asyncio.wait_for(aria.communicate(), timeout)
    except TimeoutError:
        await stop(aria, signal.SIGKILL)
        raise AssertionError(
            f"aria2c did not finish {source[:60]} from swarm seed in {timeout} s"
        ) from None
    assert aria.returncode == 0, aout.decode(errors="replace")[-2000:]
    return out


@pytest.mark.parametrize("scheme", ["http", "udp"])
async def test_aria2c_leeches_from_swarm_seed(tmp_path: Path, scheme: str) -> None:
    """The .torrent names the tracker's HTTP URL, or its UDP (BEP 15) URL only."""
    aria2c = require_tool("aria2c")
    from tracker.server import start_tracker

    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    tracker = await start_tracker("127.0.0.1", 0, interval=60)
    seed = None
    try:
        (tmp_path / "t.torrent").write_bytes(
            create_torrent(
                src / "f.bin",
                trackers=[tracker.url if scheme == "http" else str(tracker.udp_url)],
                piece_length=PIECE,
            )
        )
        seed = await spawn_swarm(
            "seed", str(src / "f.bin"), "--torrent", "t.torrent", "--json", *NET, cwd=tmp_path
        )
        await events_until(seed, "listening", 20)
        # aria2's UDP tracker client rides on its DHT socket: on, bound to 127.0.0.1 by
        # --interface, with no entry point and a fresh routing table, so it sends nothing
        udp = ("--enable-dht=true", f"--dht-listen-port={free_port()}",
               f"--dht-file-path={tmp_path / 'dht.dat'}")  # fmt: skip
        out = await aria2c_fetch(aria2c, "t.torrent", tmp_path, 30, udp if scheme == "udp" else ())
        assert (out / "f.bin").read_bytes() == payload
        counters = tracker.app[COUNTERS_KEY]
        assert counters.udp_announces == (counters.announces if scheme == "udp" else 0)
        rc = await stop(seed)
        assert seed.stderr is not None
        err = (await asyncio.wait_for(seed.stderr.read(), 5)).decode()
        assert rc == 0 and "Traceback" not in err, err
    finally:
        if seed is not None:
            await stop(seed, signal.SIGKILL)
        await tracker.close()


async def test_swarm_get_from_aria2c_seed(tmp_path: Path) -> None:
    aria2c = require_tool("aria2c")
    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    (tmp_path / "t.torrent").write_bytes(create_torrent(src / "f.bin", piece_length=PIECE))
    port = free_port()
    aria = await asyncio.create_subprocess_exec(
        *aria2_args(aria2c, port),
        "-V",
        "--seed-ratio=0.0",
        f"--dir={src}",
        "t.torrent",
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await wait_listening(port, 15)
        (tmp_path / "out").mkdir()
        get = await spawn_swarm(
            "get", "t.torrent", "-o", "out", "--peer", f"127.0.0.1:{port}", "--json", *NET,
            cwd=tmp_path,
        )  # fmt: skip
        try:
            events = await events_until(get, "summary", 30)
            rc = await asyncio.wait_for(get.wait(), 10)
        finally:
            await stop(get, signal.SIGKILL)
        assert get.stderr is not None
        err = (await asyncio.wait_for(get.stderr.read(), 5)).decode()
        assert rc == 0, err
        assert "Traceback" not in err, err
        assert events[-1]["complete"] is True
        assert (tmp_path / "out" / "f.bin").read_bytes() == payload
        peers = [e for e in events if e["event"] == "peer" and e.get("action") == "connected"]
        assert any("aria2" in str(e.get("client", "")).lower() for e in peers), peers
    finally:
        await stop(aria, signal.SIGKILL)


async def _stub_tracker(peer_port: list[int]) -> tuple[Any, str]:
    """An HTTP tracker that always answers with the one peer 127.0.0.1:peer_port[0]."""
    from aiohttp import web

    from swarm.core.bencode import encode
    from tests.helpers.http_app import serve_local

    async def announce(_req: web.Request) -> web.Response:
        peers = socket.inet_aton("127.0.0.1") + peer_port[0].to_bytes(2, "big")
        return web.Response(body=encode({b"interval": 60, b"peers": peers}))

    app = web.Application()
    app.router.add_get("/announce", announce)
    runner, port = await serve_local(app)
    return runner, f"http://127.0.0.1:{port}/announce"


async def _aria2c_magnet_from_swarm_seed(
    tmp_path: Path, tracker_url: str, on_seed_port: Any, timeout: float = 20
) -> None:
    aria2c = require_tool("aria2c")
    from swarm.core.metainfo import parse_metainfo

    payload = os.urandom(SIZE)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(payload)
    data = create_torrent(src / "f.bin", trackers=[tracker_url], piece_length=PIECE)
    (tmp_path / "t.torrent").write_bytes(data)
    magnet = parse_metainfo(data).magnet_uri()
    assert "tr=" in magnet, magnet
    seed = await spawn_swarm(
        "seed", str(src / "f.bin"), "--torrent", "t.torrent", "--json", *NET, cwd=tmp_path
    )
    try:
        ev = await events_until(seed, "listening", 20)
        on_seed_port(int(ev[-1]["port"]))
        out = await aria2c_fetch(aria2c, magnet, tmp_path, timeout)
        assert (out / "f.bin").read_bytes() == payload
        rc = await stop(seed)
        assert seed.stderr is not None
        err = (await asyncio.wait_for(seed.stderr.read(), 5)).decode()
        assert rc == 0 and "Traceback" not in err, err
    finally:
        await stop(seed, signal.SIGKILL)


async def test_aria2c_fetches_metadata_from_swarm_seed_by_magnet(tmp_path: Path) -> None:
    """A magnet only: aria2c gets the info dictionary from swarm over ut_metadata
    (BEP 9), then the data. The tracker is a stub that always names the seed."""
    port: list[int] = [0]
    runner, url = await _stub_tracker(port)
    try:
        await _aria2c_magnet_from_swarm_seed(tmp_path, url, lambda p: port.__setitem__(0, p))
    finally:
        await runner.cleanup()


async def test_aria2c_magnet_through_swarm_tracker(tmp_path: Path) -> None:
    """aria2c announces left=0 while it fetches a magnet's metadata: the tracker must
    still name the seed (it once answered seeds with no seeds at all)."""
    from tracker.server import start_tracker

    tracker = await start_tracker("127.0.0.1", 0, interval=60)
    try:
        await _aria2c_magnet_from_swarm_seed(tmp_path, tracker.url, lambda p: None)
    finally:
        await tracker.close()
