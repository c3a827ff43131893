"""`swarm get --http`: Range requests on a file still downloading get their bytes as soon as
the pieces under them are verified (their priority is raised), not when the download ends."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest
from stream_peers import ScriptedSeed, make_torrent

from swarm import Session
from swarm.httpstream import BadRange, StreamServer, parse_range
from tests.conftest import require_tool
from tests.helpers.procs import swarm_get

SIZE = 8 * 1024 * 1024
PL = 65536
RATE = 512 * 1024  # the whole file takes 16 s at this rate


def test_parse_range() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-9", 100) == (0, 9)
    assert parse_range("bytes=90-", 100) == (90, 99)
    assert parse_range("bytes=-10", 100) == (90, 99)
    assert parse_range("bytes=-1000", 100) == (0, 99)
    assert parse_range("bytes=50-1000", 100) == (50, 99)
    assert parse_range("bytes=0-1,5-6", 100) is None  # multiple ranges: whole file
    assert parse_range("items=0-1", 100) is None
    assert parse_range("bytes=9-2", 100) is None
    for bad in ("bytes=100-", "bytes=200-300", "bytes=-0"):
        with pytest.raises(BadRange):
            parse_range(bad, 100)


async def started(tmp_path: Path, seed: ScriptedSeed, s: Session) -> tuple[object, StreamServer]:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    h = await s.add_torrent(seed.meta, out, peers=[("127.0.0.1", seed.port)])
    srv = StreamServer(h, "127.0.0.1", 0)
    await srv.start()
    return h, srv


async def test_middle_range_arrives_before_the_download_ends(tmp_path: Path) -> None:
    payload, _tfile, meta = make_torrent(tmp_path, SIZE, PL)
    async with ScriptedSeed(meta, payload, reqq=8, rate=RATE) as seed, Session("127.0.0.1", 0) as s:
        h, srv = await started(tmp_path, seed, s)
        try:
            start, end = 6_000_000, 6_199_999
            t0 = time.monotonic()
            async with (
                aiohttp.ClientSession() as c,
                c.get(
                    srv.url + "f.bin",
                    headers={"Range": f"bytes={start}-{end}"},
                    timeout=aiohttp.ClientTimeout(total=12),
                ) as r,
            ):
                body = await r.read()
                assert r.status == 206
                assert r.headers["Content-Range"] == f"bytes {start}-{end}/{SIZE}"
                assert r.headers["Accept-Ranges"] == "bytes"
                assert int(r.headers["Content-Length"]) == end - start + 1
            took = time.monotonic() - t0
            assert body == payload[start : end + 1]
            st = h.status()  # type: ignore[attr-defined]
            assert st.verified < st.total_size / 2, (
                "the range should not have waited for the download"
            )
            assert took < SIZE / RATE / 2
        finally:
            await srv.close()


async def test_head_416_listing_and_404(tmp_path: Path) -> None:
    payload, _tfile, meta = make_torrent(tmp_path, 300_000, 16384)
    async with ScriptedSeed(meta, payload, reqq=8) as seed, Session("127.0.0.1", 0) as s:
        h, srv = await started(tmp_path, seed, s)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as c:
                async with c.head(srv.url + "f.bin", headers={"Range": "bytes=10-19"}) as r:
                    assert r.status == 206
                    assert r.headers["Content-Length"] == "10"
                    assert r.headers["Content-Range"] == "bytes 10-19/300000"
                async with c.get(srv.url + "f.bin", headers={"Range": "bytes=300000-"}) as r:
                    assert r.status == 416
                    assert r.headers["Content-Range"] == "bytes */300000"
                async with c.get(srv.url + "f.bin", headers={"Range": "bytes=-5000"}) as r:
                    assert r.status == 206 and await r.read() == payload[-5000:]
                async with c.get(srv.url + "f.bin") as r:
                    assert r.status == 200 and await r.read() == payload
                    assert r.headers["Accept-Ranges"] == "bytes"
                async with c.get(srv.url) as r:
                    text = await r.text()
                    assert r.status == 200 and 'href="/f.bin"' in text
                for bad in ("nope.bin", "f.bin/x", "%2e%2e/etc/passwd", "src/f.bin"):
                    async with c.get(srv.url + bad) as r:
                        assert r.status == 404, bad
        finally:
            await srv.close()


async def test_curl_range(tmp_path: Path) -> None:
    curl = require_tool("curl")
    payload, _tfile, meta = make_torrent(tmp_path, SIZE, PL)
    async with ScriptedSeed(meta, payload, reqq=8, rate=RATE) as seed, Session("127.0.0.1", 0) as s:
        _h, srv = await started(tmp_path, seed, s)
        try:
            proc = await asyncio.create_subprocess_exec(
                curl,
                "-sS",
                "--fail",
                "-r",
                "5000000-5099999",
                srv.url + "f.bin",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            out, err = await asyncio.wait_for(proc.communicate(), 12)
            assert proc.returncode == 0, err
            assert out == payload[5_000_000:5_100_000]
        finally:
            await srv.close()


async def test_a_stopped_torrent_fails_waiting_readers(tmp_path: Path) -> None:
    """A reader blocked on pieces gets an error, not a hang, when the torrent stops."""
    from swarm.errors import StorageError

    payload, _tfile, meta = make_torrent(tmp_path, 300_000, 16384)
    async with ScriptedSeed(meta, payload, unchoke=False) as seed, Session("127.0.0.1", 0) as s:
        out = tmp_path / "out"
        out.mkdir()
        h = await s.add_torrent(meta, out, peers=[("127.0.0.1", seed.port)])
        reader = asyncio.ensure_future(h.read(100_000, 1000))
        await asyncio.sleep(0)
        await h.stop()
        with pytest.raises(StorageError):
            await asyncio.wait_for(reader, 5)


async def test_cli_http_option(tmp_path: Path) -> None:
    """`swarm get --http 0 --json`: the bound URL in a listening event; serves; SIGTERM ends it."""
    import json
    import os

    payload, tfile, meta = make_torrent(tmp_path, 1_000_000, 32768)
    out = tmp_path / "out"
    out.mkdir()
    async with ScriptedSeed(meta, payload, reqq=8, rate=RATE) as seed:
        proc = await asyncio.create_subprocess_exec(
            *swarm_get(tfile, out),
            "--peer",
            f"127.0.0.1:{seed.port}",
            "--http",
            "0",
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert proc.stdout is not None
        try:
            url = None
            while url is None:
                line = await asyncio.wait_for(proc.stdout.readline(), 15)
                assert line, "swarm get exited"
                ev = json.loads(line)
                if ev["event"] == "listening" and ev.get("service") == "http":
                    url = str(ev["url"])
            assert url.startswith("http://127.0.0.1:")
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as c,
                c.get(url + "f.bin", headers={"Range": "bytes=900000-"}) as r,
            ):
                assert r.status == 206 and await r.read() == payload[900000:]
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode in (0, 1)
