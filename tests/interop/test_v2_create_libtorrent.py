"""BEP 52 against libtorrent 2: the same files give the same v1 and v2
info-hashes and piece layers whoever makes the torrent; each side loads the
other's; libtorrent finds our v2/hybrid data complete; our parser agrees
with libtorrent on every v2 file of its own test corpus."""

from __future__ import annotations

import csv
import random
import warnings
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core.bencode import decode
from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.create import build_torrent
from tests.helpers.lt import lt_session, wait_seeding

pytestmark = pytest.mark.interop

CORPUS = Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "libtorrent-test-torrents"

LAYOUTS: dict[str, dict[str, int]] = {
    "single": {"only.bin": 200_000},
    "single-small": {"tiny.txt": 100},
    "multi": {
        "a.bin": 100_000,
        "sub/b.txt": 33,
        "sub/empty": 0,
        "sub/deeper/c.dat": 70_001,
        "exact.bin": 65_536,  # ends on a piece boundary at 16 and 64 KiB: no pad
        "z.bin": 16_385,
    },
}


def make(root: Path, sizes: dict[str, int]) -> Path:
    rng = random.Random(str(sorted(sizes)))
    for rel, size in sizes.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rng.randbytes(size))
    return root / next(iter(sizes)) if len(sizes) == 1 else root


def lt_make(lt: Any, path: Path, piece_length: int, version: int | str) -> bytes:
    flags = lt.create_torrent.v2_only if version == 2 else 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        ct = lt.create_torrent(fs, piece_length, flags=flags)
        lt.set_piece_hashes(ct, str(path.parent))
        return bytes(lt.bencode(ct.generate()))


def lt_hashes(lt: Any, data: bytes) -> tuple[str, str]:
    ti = lt.torrent_info(lt.bdecode(data))
    return str(ti.info_hashes().v1), str(ti.info_hashes().v2)


def our_hashes(meta: Metainfo) -> tuple[str, str]:
    v1 = "0" * 40 if meta.version == 2 else meta.info_hash_hex
    return v1, meta.info_hash_v2_hex or ""


@pytest.mark.parametrize("version", ["hybrid", 2])
@pytest.mark.parametrize("piece_length", [16384, 65536, 1 << 20])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_same_hashes_as_libtorrent(tmp_path: Path, layout: str, piece_length: int, version: int | str) -> None:
    lt = require_libtorrent()
    path = make(tmp_path / "data", LAYOUTS[layout])
    ours = build_torrent(path, piece_length=piece_length, version=version)
    theirs = lt_make(lt, path, piece_length, version)
    # same info dict, hence same hashes; libtorrent reads ours and says so too
    assert lt_hashes(lt, theirs) == our_hashes(ours.meta) == lt_hashes(lt, ours.data)
    assert decode(theirs).get(b"piece layers", {}) == ours.meta.piece_layers
    # and we read theirs to the same model
    meta = parse_metainfo(theirs)
    assert our_hashes(meta) == our_hashes(ours.meta)
    assert meta.piece_layers == ours.meta.piece_layers
    assert [(f.path, f.length, f.pieces_root) for f in meta.files if not f.pad] == [
        (f.path, f.length, f.pieces_root) for f in ours.meta.files if not f.pad
    ]


@pytest.mark.parametrize("version", ["hybrid", 2])
def test_libtorrent_finds_our_data_complete(tmp_path: Path, version: int | str) -> None:
    """libtorrent hashes our files against our v2 (or hybrid) torrent: every piece passes."""
    lt = require_libtorrent()
    path = make(tmp_path / "data", LAYOUTS["multi"])
    data = build_torrent(path, piece_length=16384, version=version).data
    ses = lt_session(lt)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(lt.bdecode(data))
    atp.save_path = str(path.parent)
    handle = ses.add_torrent(atp)
    wait_seeding(handle, 30, "libtorrent to check our v2 data")
    assert handle.status().num_pieces == parse_metainfo(data).num_pieces


def _ok_v2_rows() -> list[str]:
    path = CORPUS / "EXPECTED.tsv"
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["file"] for r in rows if r["version"] != "v1"]


@pytest.mark.parametrize("name", _ok_v2_rows())
def test_corpus_v2_files_agree_with_installed_libtorrent(name: str) -> None:
    """Accepted by us exactly when libtorrent (2.1) accepts it, with its hashes and piece count."""
    lt = require_libtorrent()
    data = (CORPUS / name).read_bytes()
    try:  # from the file: lt.bdecode + re-encoding would tidy what it must refuse
        ti = lt.torrent_info(str(CORPUS / name))
    except RuntimeError:
        ti = None
    from swarm.errors import MetainfoError

    try:
        meta = parse_metainfo(data)
    except MetainfoError:
        assert ti is None, f"libtorrent accepts {name}"
        return
    assert ti is not None, f"libtorrent refuses {name}"
    assert meta.info_hash_v2_hex == str(ti.info_hashes().v2)
    assert meta.num_pieces == ti.num_pieces()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = ti.files()
        lt_files = [fs.file_size(i) for i in range(fs.num_files()) if not fs.file_flags(i) & 1]
    assert [f.length for f in meta.files if not f.pad] == lt_files


def test_libtorrent_downloads_our_hybrid_from_swarm_seed(tmp_path: Path) -> None:
    """`swarm create --hybrid` + `swarm seed --torrent`: libtorrent, which checks
    both the SHA-1 pieces and the v2 Merkle hashes of a hybrid, downloads it
    whole from swarm (through the v1 half) without a hash failure."""
    from tests.helpers import procs
    from tests.helpers.lt import PLAIN_TCP

    lt = require_libtorrent()
    src = make(tmp_path / "src", LAYOUTS["multi"])
    torrent = tmp_path / "h.torrent"
    result = build_torrent(src, piece_length=16384, version="hybrid")
    torrent.write_bytes(result.data)
    seed, port = procs.start_seed(
        tmp_path, str(src), "--torrent", str(torrent), "--host", "127.0.0.1", "--port", "0",
        "--no-dht", "--no-lsd",
    )
    try:
        ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
        out = tmp_path / "lt_out"
        out.mkdir()
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(torrent))
        atp.save_path = str(out)
        handle = ses.add_torrent(atp)
        handle.connect_peer(("127.0.0.1", port))
        wait_seeding(handle, 60, "libtorrent to download our hybrid torrent")
        assert handle.status().total_failed_bytes == 0  # no piece failed either hash
        for rel in LAYOUTS["multi"]:
            assert (out / "src" / rel).read_bytes() == (src / rel).read_bytes()
        assert str(handle.status().info_hashes.v2) == result.meta.info_hash_v2_hex
    finally:
        seed.terminate()
        assert seed.wait(timeout=15) == 0


def test_swarm_gets_a_libtorrent_hybrid_and_reports_both_hashes(tmp_path: Path) -> None:
    """libtorrent seeds a hybrid multi-file torrent of its own; `swarm get`
    downloads it identical and its --json `added` names the v2 info-hash."""
    import json
    import subprocess
    import sys

    from tests.helpers.lt import PLAIN_TCP

    lt = require_libtorrent()
    src = make(tmp_path / "src", LAYOUTS["multi"])
    torrent = tmp_path / "lt.torrent"
    torrent.write_bytes(lt_make(lt, src, 16384, "hybrid"))
    ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(str(torrent))
    atp.save_path = str(src.parent)
    handle = ses.add_torrent(atp)
    wait_seeding(handle, 30, "libtorrent to check its hybrid data")
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(out), "--port", "0",
         "--host", "127.0.0.1", "--peer", f"127.0.0.1:{ses.listen_port()}", "--json",
         "--no-dht", "--no-lsd"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    for rel in LAYOUTS["multi"]:
        assert (out / "src" / rel).read_bytes() == (src / rel).read_bytes()
    assert not (out / "src" / ".pad").exists()  # pad files are never written
    added = json.loads(r.stdout.splitlines()[0])
    assert added["event"] == "added"
    assert added["info_hash_v2"] == str(lt.torrent_info(str(torrent)).info_hashes().v2)
