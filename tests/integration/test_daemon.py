"""`swarm daemon` (issue 23) over real sockets on 127.0.0.1: the API from an aiohttp client,
a download through the daemon from a `swarm seed`, kill -9 and restart, the watch folder."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import aiohttp

from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.daemon import daemon, poll_torrent, start_daemon
from tests.helpers.procs import spawn_swarm

QUIET = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--no-lsd")


def _file(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def test_api_requests_and_error_answers(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _file(root / "shared" / "a.bin", 100_000)
    async with daemon(root) as d, aiohttp.ClientSession() as http:
        async with http.get(f"{d.url}/api/torrents") as r:
            assert r.status == 200 and await r.json() == []
        async with http.post(f"{d.url}/api/torrents", json={"seed": "shared/a.bin"}) as r:
            assert r.status == 201, await r.text()
            ih = (await r.json())["info_hash"]
        assert (root / "a.bin.torrent").is_file()  # the new .torrent goes in DIR
        obj = await poll_torrent(http, d.url, ih, "seeding")
        for key in ("name", "progress", "size", "downloaded", "uploaded", "down_rate", "up_rate", "peers", "dir", "error"):
            assert key in obj
        assert obj["name"] == "a.bin" and obj["progress"] == 1.0 and obj["error"] is None
        async with http.get(f"{d.url}/api/torrents/{ih}/torrent") as r:
            assert r.status == 200 and r.content_type == "application/x-bittorrent"
            assert parse_metainfo(await r.read()).info_hash.hex() == ih
        async with http.post(f"{d.url}/api/torrents", json={"seed": "shared/a.bin"}) as r:
            assert r.status == 409
        async with http.post(f"{d.url}/api/torrents/{ih}/pause") as r:
            assert r.status == 204
        assert (await poll_torrent(http, d.url, ih, "paused"))["peers"] == 0
        async with http.post(f"{d.url}/api/torrents/{ih}/resume") as r:
            assert r.status == 204
        await poll_torrent(http, d.url, ih, "seeding")
        bad = [
            ("post", "/api/torrents", {"data": b"not a torrent", "headers": {"Content-Type": "application/x-bittorrent"}}, 400),
            ("post", "/api/torrents", {"data": b"{nope", "headers": {"Content-Type": "application/json"}}, 400),
            ("post", "/api/torrents", {"json": {"magnet": "magnet:?xt=urn:btih:zz"}}, 400),
            ("post", "/api/torrents", {"json": {"seed": "shared/missing.bin"}}, 400),
            ("post", "/api/torrents", {"json": {"files": "*.iso", "magnet": "magnet:?xt=urn:btih:" + "a" * 40}}, 400),
            ("post", "/api/torrents", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 400),
            ("get", "/api/torrents/" + "0" * 40, {}, 404),
            ("post", f"/api/torrents/{'0' * 40}/pause", {}, 404),
            ("delete", f"/api/torrents/{'0' * 40}", {}, 404),
        ]
        for method, path, kw, status in bad:
            async with http.request(method, d.url + path, **kw) as r:  # type: ignore[arg-type]
                assert r.status == status, (path, kw, await r.text())
                assert "error" in await r.json()
        async with http.delete(f"{d.url}/api/torrents/{ih}") as r:
            assert r.status == 204
        async with http.get(f"{d.url}/api/torrents/{ih}") as r:
            assert r.status == 404
        assert (root / "shared" / "a.bin").is_file()  # removed without delete_data: files kept
    assert d.proc.returncode == 0


async def test_event_stream_carries_each_torrents_events(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _file(root / "a.bin", 50_000)
    async with (
        daemon(root) as d,
        aiohttp.ClientSession() as http,
        http.get(f"{d.url}/api/events") as stream,
    ):
        assert stream.status == 200 and stream.content_type == "application/x-ndjson"
        async with http.post(f"{d.url}/api/torrents", json={"seed": "a.bin"}) as r:
            ih = (await r.json())["info_hash"]
        await poll_torrent(http, d.url, ih, "seeding")
        async with http.post(f"{d.url}/api/torrents/{ih}/pause") as r:
            assert r.status == 204
        kinds = []
        while "paused" not in kinds:
            line = await asyncio.wait_for(stream.content.readline(), 10)
            ev = json.loads(line)
            assert ev["info_hash"] == ih
            kinds.append(ev["event"])
        assert kinds[0] == "added"


async def test_download_through_the_daemon_from_a_swarm_seed(tmp_path: Path) -> None:
    payload = _file(tmp_path / "src" / "movie.bin", 600_000)
    seed = await spawn_swarm("seed", str(tmp_path / "src" / "movie.bin"), "--json", *QUIET, cwd=tmp_path)
    try:
        assert seed.stdout is not None
        port = None
        while port is None:
            ev = json.loads(await asyncio.wait_for(seed.stdout.readline(), 30))
            port = ev.get("port") if ev["event"] == "listening" else None
        meta = parse_metainfo((tmp_path / "movie.bin.torrent").read_bytes())
        magnet = meta.magnet_uri(peers=[("127.0.0.1", int(port))])
        root = tmp_path / "d"
        root.mkdir()
        async with daemon(root) as d, aiohttp.ClientSession() as http:
            body = {"magnet": magnet, "dir": "downloads", "sequential": True}
            async with http.post(f"{d.url}/api/torrents", json=body) as r:
                assert r.status == 201, await r.text()
                ih = (await r.json())["info_hash"]
            assert ih == meta.info_hash.hex()
            obj = await poll_torrent(http, d.url, ih, "seeding")
            assert obj["dir"] == str((root / "downloads").resolve())
        assert (root / "downloads" / "movie.bin").read_bytes() == payload
    finally:
        seed.terminate()
        await asyncio.wait_for(seed.wait(), 20)


async def test_kill_9_and_restart_brings_every_torrent_back(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _file(root / "a.bin", 80_000)
    _file(root / "b.bin", 30_000)
    payload = os.urandom(70_000)
    (tmp_path / "c.bin").write_bytes(payload)
    c_torrent = create_torrent(tmp_path / "c.bin", piece_length=16384)
    d = await start_daemon(root)
    try:
        async with aiohttp.ClientSession() as http:
            ihs = {}
            for name in ("a.bin", "b.bin"):
                async with http.post(f"{d.url}/api/torrents", json={"seed": name}) as r:
                    ihs[name] = (await r.json())["info_hash"]
            # a download with its data already in place: verified, then seeding
            (root / "got").mkdir()
            (root / "got" / "c.bin").write_bytes(payload)
            async with http.post(
                f"{d.url}/api/torrents?dir=got&files=*.bin", data=c_torrent,
                headers={"Content-Type": "application/x-bittorrent"},
            ) as r:
                assert r.status == 201, await r.text()
                ihs["c.bin"] = (await r.json())["info_hash"]
            for ih in ihs.values():
                await poll_torrent(http, d.url, ih, "seeding")
            async with http.post(f"{d.url}/api/torrents/{ihs['b.bin']}/pause") as r:
                assert r.status == 204
        await d.kill9()
        d = await start_daemon(root)
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{d.url}/api/torrents") as r:
                listed = {t["info_hash"]: t for t in await r.json()}
            assert set(listed) == set(ihs.values())
            assert listed[ihs["b.bin"]]["state"] == "paused"
            assert listed[ihs["b.bin"]]["progress"] == 1.0  # what it had verified when paused
            assert listed[ihs["c.bin"]]["files"] == ["*.bin"]
            for name in ("a.bin", "c.bin"):
                obj = await poll_torrent(http, d.url, ihs[name], "seeding")
                assert obj["progress"] == 1.0
            async with http.post(f"{d.url}/api/torrents/{ihs['b.bin']}/resume") as r:
                assert r.status == 204
            await poll_torrent(http, d.url, ihs["b.bin"], "seeding")
        assert not list((root / ".swarm-daemon").glob("*.tmp"))
    finally:
        if d.proc.returncode is None:
            await d.stop()


async def test_watch_folder(tmp_path: Path) -> None:
    root, watch = tmp_path / "d", tmp_path / "watch"
    watch.mkdir()
    _file(root / "w.bin", 40_000)
    good = create_torrent(root / "w.bin", piece_length=16384)
    async with daemon(root, "--watch", str(watch)) as d, aiohttp.ClientSession() as http:
        (watch / "w.bin.torrent").write_bytes(good)
        (watch / "junk.torrent").write_bytes(b"d4:infoi3ee")
        (watch / "notes.txt").write_bytes(b"left alone")
        (watch / "link.torrent").symlink_to(watch / "w.bin.torrent")  # not followed: left alone
        deadline = time.monotonic() + 20
        while not ((watch / "w.bin.torrent.added").exists() and (watch / "junk.torrent.invalid").exists()):
            assert time.monotonic() < deadline, sorted(p.name for p in watch.iterdir())
            await asyncio.sleep(0.1)
        ih = parse_metainfo(good).info_hash.hex()
        await poll_torrent(http, d.url, ih, "seeding")  # its data is in DIR already
        assert (watch / "notes.txt").exists() and not (watch / "w.bin.torrent").exists()
        assert (watch / "link.torrent").is_symlink()
    assert "junk.torrent" in await d.stderr()


async def test_kill_9_keeps_a_partial_download_verified(tmp_path: Path) -> None:
    """Half the pieces on disk, no peers: after kill -9 and a restart the torrent is back,
    still downloading, with exactly those pieces verified."""
    root = tmp_path / "d"
    (root / "got").mkdir(parents=True)
    payload = os.urandom(8 * 16384)
    (tmp_path / "m.bin").write_bytes(payload)
    torrent = create_torrent(tmp_path / "m.bin", piece_length=16384)
    (root / "got" / "m.bin").write_bytes(payload[: 4 * 16384] + bytes(4 * 16384))
    d = await start_daemon(root)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                f"{d.url}/api/torrents?dir=got", data=torrent, headers={"Content-Type": "application/x-bittorrent"}
            ) as r:
                ih = (await r.json())["info_hash"]
            assert (await poll_torrent(http, d.url, ih, "downloading"))["verified"] in (0, 4 * 16384)
        await d.kill9()
        d = await start_daemon(root)
        async with aiohttp.ClientSession() as http:
            obj = await poll_torrent(http, d.url, ih, "downloading")
            deadline = time.monotonic() + 20
            while obj["verified"] != 4 * 16384:
                assert time.monotonic() < deadline, obj
                await asyncio.sleep(0.1)
                obj = await poll_torrent(http, d.url, ih, "downloading")
            assert obj["progress"] == 0.5 and obj["dir"] == str((root / "got").resolve())
    finally:
        if d.proc.returncode is None:
            await d.stop()


async def test_daemon_max_down_limits_its_downloads(tmp_path: Path) -> None:
    """`swarm daemon --max-down 1M`: the session-wide limit reaches the daemon's torrents."""
    _file(tmp_path / "src" / "slow.bin", 3 * 1024 * 1024)
    seed = await spawn_swarm("seed", str(tmp_path / "src" / "slow.bin"), "--json", *QUIET, cwd=tmp_path)
    try:
        assert seed.stdout is not None
        port = None
        while port is None:
            ev = json.loads(await asyncio.wait_for(seed.stdout.readline(), 30))
            port = ev.get("port") if ev["event"] == "listening" else None
        meta = parse_metainfo((tmp_path / "slow.bin.torrent").read_bytes())
        root = tmp_path / "d"
        root.mkdir()
        async with daemon(root, "--max-down", "1M") as d, aiohttp.ClientSession() as http:
            body = {"magnet": meta.magnet_uri(peers=[("127.0.0.1", int(port))])}
            start = time.monotonic()
            async with http.post(f"{d.url}/api/torrents", json=body) as r:
                assert r.status == 201, await r.text()
            await poll_torrent(http, d.url, meta.info_hash.hex(), "seeding", timeout=60)
            took = time.monotonic() - start
        # 3 MiB at 1 MiB/s: the first burst aside, not much under 2.5 s (unlimited: a blink)
        assert took >= 2.5, took
    finally:
        seed.terminate()
        await asyncio.wait_for(seed.wait(), 20)
