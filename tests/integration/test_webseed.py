"""BEP 19 web seeds against a Range-capable aiohttp origin started by the test, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from swarm.ui.events import validate
from tests.helpers.procs import kill_all, read_events, spawn_swarm
from tests.helpers.trees import same_tree
from tests.helpers.webseed_server import Origin


def make_tree(root: Path) -> Path:
    """Multi-file, names needing percent-encoding, pieces spanning files, an empty file."""
    d = root / "my tree"
    (d / "sub dir").mkdir(parents=True)
    (d / "a#1.bin").write_bytes(os.urandom(100_000))
    (d / "empty.txt").write_bytes(b"")
    (d / "sub dir" / "b?.bin").write_bytes(os.urandom(300_001))
    (d / "sub dir" / "c.txt").write_bytes(b"hello\n" * 1000)
    return d


async def test_single_file_from_a_web_seed_only(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(1_000_003)
    (src / "file one.bin").write_bytes(payload)
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(src) as origin:
        # url ends in "/": the name is appended (percent-encoded)
        meta = parse_metainfo(create_torrent(src / "file one.bin", piece_length=65536, web_seeds=[origin.url]))
        async with Session("127.0.0.1", 0) as s:
            h = await s.add_torrent(meta, out)
            await h.wait_complete(timeout=30)
            st = h.status()
            assert st.verified == meta.total_length
            assert [w.url for w in st.web_seeds] == [origin.url]
            assert st.web_seeds[0].downloaded == meta.total_length
    assert (out / "file one.bin").read_bytes() == payload
    assert origin.served == meta.total_length  # each byte once


async def test_multi_file_from_a_web_seed_only(tmp_path: Path) -> None:
    tree = make_tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(tmp_path) as origin:
        meta = parse_metainfo(create_torrent(tree, piece_length=32768))
        async with Session("127.0.0.1", 0) as s:
            # the URL without its final "/": the multi-file layout adds it
            h = await s.add_torrent(meta, out, web_seeds=[origin.url.rstrip("/")])
            await h.wait_complete(timeout=30)
    assert same_tree(tree, out / "my tree")
    assert origin.served == meta.total_length


async def _dropped_and_peers_finish(tmp_path: Path, mode: str) -> None:
    tree = make_tree(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    data = create_torrent(tree, piece_length=16384)
    meta = parse_metainfo(data)
    async with Origin(tmp_path, mode=mode) as origin, Session("127.0.0.1", 0) as get_s:
        h = await get_s.add_torrent(meta, out, web_seeds=[origin.url])
        events = h.events()
        got: list[dict[str, object]] = []
        # default backoff (1 s, then 2 s): dropped within seconds
        async with asyncio.timeout(30):
            async for kind, fields in events:
                if kind == "web_seed":
                    got.append(fields)
                    if fields["action"] == "dropped":
                        break
        assert got[-1]["url"] == origin.url and got[-1]["reason"]
        assert [f["action"] for f in got].count("failed") == 2
        assert h.status().web_seeds[0].state == "dropped"
        assert not h.is_complete()
        async with Session("127.0.0.1", 0) as seed_s:
            await seed_s.add_torrent(data, tmp_path, seed_only=True)
            h.add_peer("127.0.0.1", seed_s.port or 0)
            await h.wait_complete(timeout=30)
        await events.aclose()
    assert same_tree(tree, out / "my tree")


async def test_web_seed_serving_wrong_bytes_is_dropped_and_peers_finish(tmp_path: Path) -> None:
    await _dropped_and_peers_finish(tmp_path, "corrupt")


async def test_web_seed_answering_500_is_dropped_and_peers_finish(tmp_path: Path) -> None:
    await _dropped_and_peers_finish(tmp_path, "error")


async def test_web_seed_and_peer_both_contribute(tmp_path: Path) -> None:
    """The peer holds only the first file: it serves that, the web seed the rest."""
    tree = make_tree(tmp_path)
    data = create_torrent(tree, piece_length=16384)
    meta = parse_metainfo(data)
    partial = tmp_path / "partial" / "my tree"
    (partial / "sub dir").mkdir(parents=True)
    (partial / "a#1.bin").write_bytes((tree / "a#1.bin").read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(tmp_path) as origin, Session("127.0.0.1", 0) as peer_s, Session("127.0.0.1", 0) as get_s:
        peer = await peer_s.add_torrent(data, tmp_path / "partial", torrent_web_seeds=False)
        assert 0 < peer.status().verified < meta.total_length
        h = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", peer_s.port or 0)], web_seeds=[origin.url])
        await h.wait_complete(timeout=30)
        from_peer = peer.status().uploaded
    assert same_tree(tree, out / "my tree")
    assert from_peer > 0 and origin.served > 0
    # the origin served about the part the peer lacked, not the whole torrent again
    assert origin.served < meta.total_length


async def test_cli_get_json_names_web_seeds_and_drops_the_bad_one(tmp_path: Path) -> None:
    """`get --web-seed` (repeatable) with `--no-web-seeds`: the torrent's own url-list is
    ignored, a 500-ing origin is dropped (named in --json and on stderr), the good one finishes."""
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(300_000)
    (src / "f.bin").write_bytes(payload)
    torrent = tmp_path / "f.torrent"
    torrent.write_bytes(create_torrent(src / "f.bin", piece_length=16384, web_seeds=["http://127.0.0.1:1/nothing"]))
    out = tmp_path / "out"
    async with Origin(src) as good, Origin(src, mode="error") as bad:
        proc = await spawn_swarm(
            "get", str(torrent), "-o", str(out), "--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd",
            "--json", "--no-web-seeds", "--web-seed", bad.url, "--web-seed", good.url, cwd=tmp_path,
        )
        try:
            events = await read_events(proc, "summary", timeout=60)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        finally:
            await kill_all([proc])
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
    ws = [(e["action"], e["url"]) for e in events if e["event"] == "web_seed"]
    assert all(url != "http://127.0.0.1:1/nothing" for _, url in ws)
    assert all(validate(e) == [] for e in events)
    assert (out / "f.bin").read_bytes() == payload
    assert good.served == len(payload)
    # the bad one failed at least once; dropped if the download lasted long enough
    assert ("failed", bad.url) in ws
    if ("dropped", bad.url) in ws:
        assert bad.url in err and "dropped" in err
    assert "Traceback" not in err


async def test_stalling_web_seed_is_backed_off_then_dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer that stops mid-body counts as a failure after the stall timeout."""
    from swarm.parts import webseed

    monkeypatch.setattr(webseed, "STALL_TIMEOUT", 0.5)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(200_000))
    meta = parse_metainfo(create_torrent(src / "f.bin", piece_length=16384))
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(src, mode="stall") as origin, Session("127.0.0.1", 0) as s:
        h = await s.add_torrent(meta, out, web_seeds=[origin.url])
        got: list[dict[str, object]] = []
        events = h.events()
        async with asyncio.timeout(30):
            async for kind, fields in events:
                if kind == "web_seed":
                    got.append(fields)
                    if fields["action"] == "dropped":
                        break
        await events.aclose()
        assert [f["action"] for f in got] == ["failed", "failed", "dropped"]
        assert all("Timeout" in str(f["reason"]) or "timeout" in str(f["reason"]) for f in got), got
        assert h.status().web_seeds[0].state == "dropped"
        assert not h.is_complete() and origin.requests == 3
