"""Our parser and our `create` agree with libtorrent, mktorrent and transmission-create."""

from __future__ import annotations

import hashlib
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent, require_tool

from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import build_torrent
from tests.helpers.lt import lt_session, make_lt_torrent

pytestmark = pytest.mark.interop

SIZES = {"a.bin": 100_000, "sub/b.txt": 33, "sub/deeper/c.dat": 70_001, "z.bin": 16_384}


def make_tree(root: Path, sizes: dict[str, int] = SIZES) -> Path:
    rng = hashlib.sha256(str(root).encode()).digest()
    for rel, size in sizes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes((rng * (size // 32 + 1))[:size] if size else b"")
        rng = hashlib.sha256(rng).digest()
    return root


def lt_view(lt: Any, data: bytes) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ti = lt.torrent_info(lt.bdecode(data))
        fs = ti.files()
        return {
            "hash": str(ti.info_hashes().v1),
            "pieces": b"".join(bytes(ti.hash_for_piece(i)) for i in range(ti.num_pieces())),
            "files": [
                (fs.file_path(i), fs.file_size(i))
                for i in range(fs.num_files())
                if not fs.file_flags(i) & 1  # not a pad file
            ],
            "piece_length": ti.piece_length(),
            "trackers": [t.url for t in ti.trackers()],
            "priv": ti.priv(),
            "web_seeds": [w["url"] for w in ti.web_seeds()],
            "name": ti.name(),
        }


def our_files(meta: Metainfo) -> list[tuple[str, int]]:
    return [("/".join(f.path), f.length) for f in meta.files if not f.pad]


def lt_create(lt: Any, path: Path, piece_length: int, flags: int) -> bytes:
    v1_only = flags == lt.create_torrent.v1_only
    assert v1_only or flags == 0, flags
    return make_lt_torrent(
        lt, path, piece_length, v1_only=v1_only, trackers=["http://127.0.0.1:6969/announce"]
    )


@pytest.mark.parametrize("layout", ["single", "multi"])
@pytest.mark.parametrize("kind", ["v1_only", "hybrid"])
def test_libtorrent_made_torrents_parse(tmp_path: Path, layout: str, kind: str) -> None:
    lt = require_libtorrent()
    tree = make_tree(tmp_path / "data")
    path = tree / "a.bin" if layout == "single" else tree
    flags = lt.create_torrent.v1_only if kind == "v1_only" else 0
    data = lt_create(lt, path, 16384, flags)
    meta = parse_metainfo(data)
    ref = lt_view(lt, data)
    assert meta.info_hash.hex() == ref["hash"]
    assert meta.pieces == ref["pieces"]
    assert our_files(meta) == ref["files"]
    assert meta.trackers == [["http://127.0.0.1:6969/announce"]]
    assert meta.multi_file == (layout == "multi")
    if kind == "hybrid" and layout == "multi":
        assert any(f.pad for f in meta.files)  # BEP 47 pad files recognised


@pytest.mark.parametrize("layout", ["single", "multi"])
def test_mktorrent_made_torrents_parse(tmp_path: Path, layout: str) -> None:
    mktorrent = require_tool("mktorrent")
    lt = require_libtorrent()
    tree = make_tree(tmp_path / "data")
    path = tree / "a.bin" if layout == "single" else tree
    out = tmp_path / "mk.torrent"
    subprocess.run(
        [
            mktorrent,
            "-l",
            "15",
            "-a",
            "http://127.0.0.1:1/a",
            "-a",
            "udp://127.0.0.1:2",
            "-p",
            "-c",
            "made by mktorrent",
            "-o",
            str(out),
            str(path),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    data = out.read_bytes()
    meta = parse_metainfo(data)
    ref = lt_view(lt, data)
    assert meta.info_hash.hex() == ref["hash"]
    assert meta.pieces == ref["pieces"] and meta.piece_length == 32768
    assert sorted(our_files(meta)) == sorted(ref["files"])
    assert meta.private and meta.comment == "made by mktorrent"
    assert [u for tier in meta.trackers for u in tier] == [
        "http://127.0.0.1:1/a",
        "udp://127.0.0.1:2",
    ]


def test_transmission_made_torrent_parses(tmp_path: Path) -> None:
    tc = require_tool("transmission-create")
    lt = require_libtorrent()
    tree = make_tree(tmp_path / "data")
    out = tmp_path / "tr.torrent"
    subprocess.run(
        [tc, "-o", str(out), "-t", "http://127.0.0.1:1/announce", str(tree)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    data = out.read_bytes()
    meta = parse_metainfo(data)
    ref = lt_view(lt, data)
    assert meta.info_hash.hex() == ref["hash"]
    assert sorted(our_files(meta)) == sorted(ref["files"])


def expected_pieces(files: list[Path], piece_length: int) -> bytes:
    blob = b"".join(p.read_bytes() for p in files)
    return b"".join(
        hashlib.sha1(blob[i : i + piece_length]).digest() for i in range(0, len(blob), piece_length)
    )


@pytest.mark.parametrize("piece_length", [None, 16384, 65536, 1 << 20])
@pytest.mark.parametrize("layout", ["single", "multi"])
def test_our_torrents_load_in_libtorrent(
    tmp_path: Path, layout: str, piece_length: int | None
) -> None:
    lt = require_libtorrent()
    tree = make_tree(tmp_path / "data", {**SIZES, "sub/empty": 0, "é ü.txt": 5})
    path = tree / "a.bin" if layout == "single" else tree
    result = build_torrent(
        path,
        trackers=["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"],
        piece_length=piece_length,
        private=True,
        comment="hi",
        web_seeds=["http://127.0.0.1:8000/"],
    )
    meta = result.meta
    ref = lt_view(lt, result.data)
    assert meta.info_hash.hex() == ref["hash"]
    assert meta.pieces == ref["pieces"]
    assert our_files(meta) == ref["files"]
    assert meta.piece_length == ref["piece_length"]
    assert ref["trackers"] == ["http://127.0.0.1:6969/announce", "udp://127.0.0.1:6969"]
    assert ref["priv"] and ref["web_seeds"] == ["http://127.0.0.1:8000/"]
    # independently computed piece hashes, files in sorted path order
    if layout == "single":
        files = [path]
    else:
        files = sorted(
            (p for p in tree.rglob("*") if p.is_file()), key=lambda p: p.relative_to(tree).parts
        )
    assert meta.pieces == expected_pieces(files, meta.piece_length)


def test_libtorrent_verifies_our_data(tmp_path: Path) -> None:
    """A libtorrent session checks the files against our torrent and finds them complete."""
    lt = require_libtorrent()
    tree = make_tree(tmp_path / "data")
    data = build_torrent(tree, piece_length=16384).data
    ses = lt_session(lt)
    try:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(lt.bdecode(data))
        atp.save_path = str(tmp_path)
        handle = ses.add_torrent(atp)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            status = handle.status()
            if status.state in (lt.torrent_status.seeding, lt.torrent_status.finished):
                break
            ses.wait_for_alert(100)
            ses.pop_alerts()
        assert handle.status().is_seeding
        assert handle.status().num_pieces == atp.ti.num_pieces()
    finally:
        ses.pause()
        del ses
