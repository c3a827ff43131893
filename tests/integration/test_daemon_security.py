"""The daemon API's security rules (issue 23), each refused over a real socket: wrong Host
(DNS rebinding), other Origin (CSRF), missing or wrong token, oversized body, a seed
path outside DIR and --share, a symlink out; a non-loopback --api without a token."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import aiohttp

from tests.helpers.daemon import LOCAL, daemon, poll_torrent
from tests.helpers.procs import ENV, SWARM


async def test_host_header_must_name_this_machine(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d, aiohttp.ClientSession() as http:
        port = d.url.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}", "192.168.1.10", "localhost.evil.example"):
            for path in ("/", "/api/torrents"):
                async with http.get(d.url + path, headers={"Host": host}) as r:
                    assert r.status == 421, (host, path)
        for host in ("localhost", f"localhost:{port}", "127.0.0.1", f"127.0.0.1:{port}"):
            async with http.get(d.url + "/api/torrents", headers={"Host": host}) as r:
                assert r.status == 200, host


async def test_cross_origin_changes_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(20_000))
    async with daemon(tmp_path) as d, aiohttp.ClientSession() as http:
        for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
            async with http.post(f"{d.url}/api/torrents", json={"seed": "a.bin"}, headers=headers) as r:
                assert r.status == 403, headers
            async with http.delete(f"{d.url}/api/torrents/{'0' * 40}", headers=headers) as r:
                assert r.status == 403, headers
        async with http.get(f"{d.url}/api/torrents", headers={"Origin": "http://evil.example"}) as r:
            assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
        async with http.post(f"{d.url}/api/torrents", json={"seed": "a.bin"}, headers={"Origin": d.url}) as r:
            assert r.status == 201  # the page's own origin
        async with http.get(f"{d.url}/api/torrents") as r:
            assert len(await r.json()) == 1  # nothing else got in


async def test_token(tmp_path: Path) -> None:
    async with daemon(tmp_path, "--token", "s3cret") as d, aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            async with http.get(f"{d.url}/api/torrents", headers=headers) as r:
                assert r.status == 401 and r.headers.get("WWW-Authenticate") == "Bearer"
            async with http.get(f"{d.url}/api/events", headers=headers) as r:
                assert r.status == 401
        async with http.get(f"{d.url}/api/torrents", headers={"Authorization": "Bearer s3cret"}) as r:
            assert r.status == 200
        async with http.get(f"{d.url}/") as r:
            assert r.status == 200  # the page holds no data; it asks for the token


def test_non_loopback_api_needs_a_token(tmp_path: Path) -> None:
    r = subprocess.run(
        [*SWARM, "daemon", "-o", str(tmp_path), "--api", "0.0.0.0:0", *LOCAL],
        capture_output=True, text=True, timeout=30, env=ENV,
    )
    assert r.returncode == 2 and "--token" in r.stderr and "Traceback" not in r.stderr


async def test_wildcard_api_takes_ip_literals_not_names(tmp_path: Path) -> None:
    async with daemon(tmp_path, "--api", "0.0.0.0:0", "--token", "t") as d, aiohttp.ClientSession() as http:
        url = d.url.replace("0.0.0.0", "127.0.0.1")
        auth = {"Authorization": "Bearer t"}
        async with http.get(f"{url}/api/torrents", headers={**auth, "Host": "192.168.1.10:9091"}) as r:
            assert r.status == 200
        async with http.get(f"{url}/api/torrents", headers={**auth, "Host": "nas.evil.example"}) as r:
            assert r.status == 421


async def test_oversized_body(tmp_path: Path) -> None:
    async with daemon(tmp_path) as d, aiohttp.ClientSession() as http:
        body = b"d" + b"x" * (16 * 1024 * 1024 + 10)
        try:
            async with http.post(
                f"{d.url}/api/torrents", data=body, headers={"Content-Type": "application/x-bittorrent"}
            ) as r:
                assert r.status == 413
        except aiohttp.ClientOSError:
            pass  # refused before the body was sent: the connection closed under the upload
        async with http.get(f"{d.url}/api/torrents") as r:
            assert r.status == 200 and await r.json() == []


async def test_seed_paths_are_confined(tmp_path: Path) -> None:
    root, share, outside = tmp_path / "d", tmp_path / "share", tmp_path / "outside"
    for folder in (root, share, outside):
        folder.mkdir()
        (folder / "f.bin").write_bytes(os.urandom(20_000))
    (root / "link-out").symlink_to(outside / "f.bin")
    (root / "dir-out").symlink_to(outside)
    async with daemon(root, "--share", str(share)) as d, aiohttp.ClientSession() as http:
        refused = [
            str(outside / "f.bin"), "../outside/f.bin", "link-out", "dir-out/f.bin", "dir-out",
            ".", str(root), ".swarm-daemon", "/etc/passwd",
        ]
        for path in refused:
            async with http.post(f"{d.url}/api/torrents", json={"seed": path}) as r:
                assert r.status == 403, (path, await r.text())
        for path in ("f\x00.bin", "x" * 5000):
            async with http.post(f"{d.url}/api/torrents", json={"seed": path}) as r:
                assert r.status in (400, 403), (path, await r.text())
        async with http.post(f"{d.url}/api/torrents", json={"magnet": "magnet:?xt=urn:btih:" + "c" * 40, "dir": "a\x00b"}) as r:
            assert r.status == 400
        magnet = "magnet:?xt=urn:btih:" + "d" * 40
        for target in (str(outside), "../outside", "dir-out", str(Path.home()), ".swarm-daemon"):
            async with http.post(f"{d.url}/api/torrents", json={"magnet": magnet, "dir": target}) as r:
                assert r.status == 403, (target, await r.text())  # downloads stay in DIR and --share
        async with http.post(f"{d.url}/api/torrents", json={"seed": str(share / "f.bin")}) as r:
            assert r.status == 201, await r.text()
            ih = (await r.json())["info_hash"]
        await poll_torrent(http, d.url, ih, "seeding")
        async with http.post(f"{d.url}/api/torrents", json={"seed": "f.bin"}) as r:
            assert r.status == 201
            ih2 = (await r.json())["info_hash"]
        await poll_torrent(http, d.url, ih2, "seeding")
        async with http.delete(f"{d.url}/api/torrents/{ih2}?delete_data=1") as r:
            assert r.status == 204
        assert not (root / "f.bin").exists() and (outside / "f.bin").exists()
        async with http.get(f"{d.url}/api/torrents") as r:
            assert [t["info_hash"] for t in await r.json()] == [ih]
