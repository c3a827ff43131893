"""`swarm remote` driving a daemon subprocess (issue 23): every action and the contract's exit
codes (0 done, 1 runtime failure, 2 bad input or no daemon)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path

import aiohttp

from swarm.core.metainfo import parse_metainfo
from swarm.create import build_torrent, create_torrent
from tests.helpers.daemon import daemon
from tests.helpers.procs import ENV, SWARM


async def remote(url: str, *args: str, token: str | None = None, cwd: Path | None = None) -> tuple[int, str, str]:
    extra = ("--token", token) if token else ()
    proc = await asyncio.create_subprocess_exec(
        *SWARM, "remote", "--api", url, *extra, *args, cwd=cwd, env=ENV,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert b"Traceback" not in err, err
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_every_action(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "a.bin").write_bytes(os.urandom(50_000))
    payload = os.urandom(30_000)
    (tmp_path / "b.bin").write_bytes(payload)
    (tmp_path / "b.bin.torrent").write_bytes(create_torrent(tmp_path / "b.bin", piece_length=16384))
    b_ih = parse_metainfo((tmp_path / "b.bin.torrent").read_bytes()).info_hash.hex()
    async with daemon(root, "--token", "tok") as d:
        code, out, _ = await remote(d.url, "seed", str(root / "a.bin"), token="tok")
        assert code == 0
        a_ih = out.strip()
        assert len(a_ih) == 40
        assert (await remote(d.url, "wait", a_ih[:8], token="tok"))[0] == 0
        # a download whose data is already in place: verified on add, so wait ends at once
        (root / "got").mkdir()
        (root / "got" / "b.bin").write_bytes(payload)
        code, out, _ = await remote(d.url, "add", str(tmp_path / "b.bin.torrent"), "-o", "got", token="tok")
        assert code == 0 and out.strip() == b_ih
        assert (await remote(d.url, "wait", b_ih, token="tok"))[0] == 0
        code, out, _ = await remote(d.url, "list", token="tok")
        assert code == 0 and "a.bin" in out and "b.bin" in out and "seeding" in out
        assert (await remote(d.url, "pause", b_ih, token="tok"))[0] == 0
        code, out, _ = await remote(d.url, "--json", "list", token="tok")
        states = {t["info_hash"]: t["state"] for t in json.loads(out)}
        assert states == {a_ih: "seeding", b_ih: "paused"}
        assert (await remote(d.url, "resume", b_ih, token="tok"))[0] == 0
        assert (await remote(d.url, "remove", b_ih, "--delete-data", token="tok"))[0] == 0
        assert not (root / "got" / "b.bin").exists()
        # bad input and failures
        assert (await remote(d.url, "list"))[0] == 2  # no token: 401
        assert (await remote(d.url, "pause", "f" * 40, token="tok"))[0] == 2  # unknown
        assert (await remote(d.url, "add", str(tmp_path / "nope.torrent"), token="tok"))[0] == 2
        assert (await remote(d.url, "seed", "/etc/hostname", token="tok"))[0] == 2  # outside: 403
        assert (await remote(d.url, "seed", str(root / "a.bin"), token="tok"))[0] == 1  # already there: 409


async def test_wait_exits_1_on_the_torrents_error(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    (root / "blocker").write_bytes(b"")  # a file where the download directory should be
    (tmp_path / "c.bin").write_bytes(os.urandom(20_000))
    (tmp_path / "c.torrent").write_bytes(create_torrent(tmp_path / "c.bin", piece_length=16384))
    async with daemon(root) as d:
        code, out, _ = await remote(d.url, "add", str(tmp_path / "c.torrent"), "-o", "blocker/sub")
        assert code == 0
        code, _, err = await remote(d.url, "wait", out.strip())
        assert code == 1 and "c.bin" in err


async def test_no_daemon_is_exit_2(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, _, err = await remote(f"http://127.0.0.1:{port}", "list")
    assert code == 2 and "no swarm daemon answers" in err


async def test_v2_torrents_are_named_by_their_sha256_info_hash(tmp_path: Path) -> None:
    """The contract's IH: the 64-digit v2 info-hash for a v2-only torrent (never its truncated
    40-digit form), the v1 one for a hybrid, whose v2 hash is accepted as an alias."""
    root = tmp_path / "d"
    (root / "got").mkdir(parents=True)
    metas = {}
    for name, version in (("v2.bin", 2), ("hy.bin", "hybrid")):
        payload = os.urandom(40_000)
        (tmp_path / name).write_bytes(payload)
        (root / "got" / name).write_bytes(payload)  # in place: verified on add
        data = build_torrent(tmp_path / name, piece_length=16384, version=version).data
        (tmp_path / f"{name}.torrent").write_bytes(data)
        metas[name] = parse_metainfo(data)
    v2 = metas["v2.bin"]
    assert v2.info_hash_v2 is not None
    v2_ih = v2.info_hash_v2.hex()
    hy = metas["hy.bin"]
    assert hy.info_hash_v2 is not None
    hy_ih, hy_alias = hy.info_hash.hex(), hy.info_hash_v2.hex()
    magnet = "magnet:?xt=urn:btmh:1220" + "ab" * 32
    async with daemon(root) as d:
        code, out, _ = await remote(d.url, "add", str(tmp_path / "v2.bin.torrent"), "-o", "got")
        assert code == 0 and out.strip() == v2_ih
        code, out, _ = await remote(d.url, "add", str(tmp_path / "hy.bin.torrent"), "-o", "got")
        assert code == 0 and out.strip() == hy_ih
        code, out, _ = await remote(d.url, "add", magnet, "--paused")
        assert code == 0 and out.strip() == "ab" * 32
        assert (await remote(d.url, "wait", v2_ih))[0] == 0
        assert (await remote(d.url, "wait", hy_alias))[0] == 0  # the hybrid by its v2 hash
        code, out, _ = await remote(d.url, "--json", "list")
        listed = {t["info_hash"]: t for t in json.loads(out)}
        assert set(listed) == {v2_ih, hy_ih, "ab" * 32}
        assert listed[hy_ih]["info_hash_v2"] == hy_alias and listed[v2_ih]["info_hash_v2"] == v2_ih
        async with aiohttp.ClientSession() as http, http.get(f"{d.url}/api/events") as events:
            assert (await remote(d.url, "pause", v2_ih[:10]))[0] == 0  # a prefix of the 64 digits
            while (ev := json.loads(await asyncio.wait_for(events.content.readline(), 30)))["event"] != "paused":
                pass
            assert ev["info_hash"] == v2_ih  # the event stream names it by the API's IH too
        assert (await remote(d.url, "pause", hy_alias))[0] == 0
        code, out, _ = await remote(d.url, "--json", "list")
        assert {t["info_hash"]: t["state"] for t in json.loads(out)} == {
            v2_ih: "paused", hy_ih: "paused", "ab" * 32: "paused"
        }
        assert (await remote(d.url, "resume", v2_ih))[0] == 0
        assert (await remote(d.url, "wait", v2_ih))[0] == 0
        # the same torrent again, by its other hash: already there
        assert (await remote(d.url, "add", "magnet:?xt=urn:btmh:1220" + hy_alias))[0] == 1
        for ih in (v2_ih, hy_alias, "ab" * 32):
            assert (await remote(d.url, "remove", ih))[0] == 0
        code, out, _ = await remote(d.url, "--json", "list")
        assert code == 0 and json.loads(out) == []
