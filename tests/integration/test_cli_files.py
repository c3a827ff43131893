"""Files the CLI writes or reads next to user data (issue 16, items 5 and 18): the magnet's
.torrent never goes through a symlink, never replaces another file and fits the name limit;
``-o DIR`` is created when missing."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from swarm.cli.get import _check_output_dir, save_torrent_file
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.procs import read_events, spawn_swarm

NET = ("--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd")


def test_torrent_file_not_written_through_a_symlink(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.write_bytes(b"precious\n")
    (out / "x.torrent").symlink_to(outside)
    warned: list[str] = []
    saved = save_torrent_file(out, "x", b"d4:infod3:zzz0:ee", warned.append)
    assert outside.read_bytes() == b"precious\n"
    assert (out / "x.torrent").is_symlink()
    assert saved == out / "x.1.torrent" and saved.read_bytes() == b"d4:infod3:zzz0:ee"
    assert warned and "x.1.torrent" in warned[0]
    assert sorted(p.name for p in out.iterdir()) == ["x.1.torrent", "x.torrent"]  # no temp file left


def test_torrent_file_keeps_an_existing_file(tmp_path: Path) -> None:
    (tmp_path / "x.torrent").write_bytes(b"someone else's")
    warned: list[str] = []
    assert save_torrent_file(tmp_path, "x", b"ours", warned.append) == tmp_path / "x.1.torrent"
    assert (tmp_path / "x.torrent").read_bytes() == b"someone else's"
    # the same metadata again (the same magnet fetched twice): the file already saved is reused
    again: list[str] = []
    assert save_torrent_file(tmp_path, "x", b"ours", again.append) == tmp_path / "x.1.torrent"
    assert not again


def test_torrent_file_gives_up_quietly_when_every_name_is_taken(tmp_path: Path) -> None:
    for n in range(10):
        (tmp_path / ("x.torrent" if n == 0 else f"x.{n}.torrent")).write_bytes(b"other")
    warned: list[str] = []
    assert save_torrent_file(tmp_path, "x", b"ours", warned.append) is None
    assert warned and "not saved" in warned[0]


def test_torrent_file_name_is_cut_to_fit(tmp_path: Path) -> None:
    name = "é" * 125 + "ab"  # 252 bytes: with ".torrent" it is 260, over the 255-byte limit
    saved = save_torrent_file(tmp_path, name, b"ours", [].append)
    assert saved is not None and saved.read_bytes() == b"ours"
    assert len(saved.name.encode()) <= 255 and saved.name.endswith(".torrent")
    assert saved.name.startswith("é" * 100)


def test_output_dir_is_created_with_parents(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c"
    _check_output_dir(target)
    assert target.is_dir()
    _check_output_dir(target)  # already there: fine


async def _seed_and_get_magnet(tmp_path: Path, name: str, out: str) -> tuple[int, bytes, str]:
    """`swarm seed` a random file called ``name``; `swarm get` its magnet into ``out``."""
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(200_000)
    (src / name).write_bytes(payload)
    (tmp_path / "t.torrent").write_bytes(create_torrent(src / name, piece_length=16384))
    seed = await spawn_swarm("seed", str(src / name), "--torrent", "t.torrent", *NET, "--json", cwd=tmp_path)
    try:
        events = await read_events(seed, "listening", 20)
        magnet = str(next(e for e in events if e["event"] == "added")["magnet"])
        get = await spawn_swarm("get", magnet, "-o", out, *NET, "--json", cwd=tmp_path)
        await read_events(get, "summary", 30)
        rc = await asyncio.wait_for(get.wait(), 10)
        assert get.stderr is not None
        err = (await asyncio.wait_for(get.stderr.read(), 10)).decode()
        return rc, payload, err
    finally:
        seed.send_signal(signal.SIGTERM)
        await asyncio.wait_for(seed.wait(), 10)


async def test_magnet_with_a_symlink_where_its_torrent_goes(tmp_path: Path) -> None:
    out, outside = tmp_path / "out", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_bytes(b"precious\n")
    (out / "m.bin.torrent").symlink_to(outside)
    rc, payload, err = await _seed_and_get_magnet(tmp_path, "m.bin", "out")
    assert rc == 0, err
    assert outside.read_bytes() == b"precious\n"
    assert (out / "m.bin").read_bytes() == payload
    assert parse_metainfo((out / "m.bin.1.torrent").read_bytes()).name == "m.bin"
    assert "m.bin.1.torrent" in err


async def test_magnet_with_a_255_byte_name_into_a_new_directory(tmp_path: Path) -> None:
    name = "é" * 125 + "x.bin"  # 255 bytes: the data file fits, "<name>.torrent" would not
    rc, payload, err = await _seed_and_get_magnet(tmp_path, name, "new/deeper")
    assert rc == 0, err
    out = tmp_path / "new" / "deeper"
    assert (out / name).read_bytes() == payload
    (saved,) = [p for p in out.iterdir() if p.name.endswith(".torrent")]
    assert len(saved.name.encode()) <= 255
    assert parse_metainfo(saved.read_bytes()).name == name


async def test_seed_does_not_write_its_torrent_through_a_symlink(tmp_path: Path) -> None:
    """`swarm seed PATH` makes <name>.torrent in the current directory like a magnet's: a
    symlink or another file already there is left alone and a numbered name is used."""
    src, outside = tmp_path / "src", tmp_path / "outside.txt"
    src.mkdir()
    (src / "s.bin").write_bytes(os.urandom(50_000))
    outside.write_bytes(b"precious\n")
    (tmp_path / "s.bin.torrent").symlink_to(outside)
    seed = await spawn_swarm("seed", str(src / "s.bin"), *NET, "--json", cwd=tmp_path)
    try:
        events = await read_events(seed, "listening", 20)
    finally:
        seed.send_signal(signal.SIGTERM)
        await asyncio.wait_for(seed.wait(), 10)
    assert outside.read_bytes() == b"precious\n"
    assert (tmp_path / "s.bin.torrent").is_symlink()
    assert parse_metainfo((tmp_path / "s.bin.1.torrent").read_bytes()).name == "s.bin"
    started = next(e for e in events if e["event"] == "added")
    assert str(started.get("torrent", "")).endswith("s.bin.1.torrent"), started
