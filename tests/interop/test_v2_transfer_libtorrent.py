"""BEP 52 transfers between swarm and libtorrent 2 on 127.0.0.1 (libtorrent's
DHT/LSD/UPnP/NAT-PMP off, plain TCP): v2-only and hybrid multi-file torrents
both ways, the same info-hashes on both sides and no hash failures."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.core.metainfo import parse_metainfo
from tests.helpers import procs
from tests.helpers.lt import PLAIN_TCP, lt_session, make_lt_torrent, wait_seeding
from tests.helpers.trees import same_tree
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.interop

PL = 32768
LOCAL_NET = ("--port", "0", "--host", "127.0.0.1", "--no-dht", "--no-lsd")


def make_tree(root: Path) -> Path:
    """Files ending inside pieces (pads in the v1 half), one smaller than a
    piece, one under a block, an empty one, one exactly a piece long."""
    d = root / "pack"
    (d / "sub").mkdir(parents=True)
    (d / "a.bin").write_bytes(os.urandom(7 * PL + 1234))
    (d / "sub" / "b.bin").write_bytes(os.urandom(PL // 2 + 5))
    (d / "sub" / "c.txt").write_bytes(b"v2\n" * 100)
    (d / "sub" / "empty").write_bytes(b"")
    (d / "z.bin").write_bytes(os.urandom(PL))
    return d


def lt_hashes(lt: Any, data: bytes) -> tuple[str, str]:
    hashes = lt.torrent_info(lt.bdecode(data)).info_hashes()
    return (str(hashes.v1) if hashes.has_v1() else ""), (str(hashes.v2) if hashes.has_v2() else "")


def our_hashes(data: bytes) -> tuple[str, str]:
    meta = parse_metainfo(data)
    return ("" if meta.version == 2 else meta.info_hash_hex), meta.info_hash_v2_hex or ""


def lt_add(lt: Any, ses: Any, data: bytes, save: Path) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(lt.bdecode(data))
    atp.save_path = str(save)
    return ses.add_torrent(atp)


def hash_failures(lt: Any, ses: Any) -> list[str]:
    return [a.message() for a in ses.pop_alerts() if isinstance(a, lt.hash_failed_alert)]


@pytest.mark.parametrize("version", [2, "hybrid"])
def test_libtorrent_seeds_swarm_gets(tmp_path: Path, version: int | str) -> None:
    lt = require_libtorrent()
    src = make_tree(tmp_path)
    data = make_lt_torrent(lt, src, PL, v1_only=False, v2_only=version == 2)
    assert parse_metainfo(data).version == version
    torrent = tmp_path / "lt.torrent"
    torrent.write_bytes(data)
    ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
    h = lt_add(lt, ses, data, tmp_path)
    wait_seeding(h, 30, "libtorrent to check its data")
    out = tmp_path / "out"
    r = subprocess.run(
        [*procs.SWARM, "get", str(torrent), "-o", str(out), *LOCAL_NET,
         "--peer", f"127.0.0.1:{ses.listen_port()}", "--json"],
        capture_output=True, text=True, timeout=90, env=procs.ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert same_tree(src, out / "pack")
    assert not (out / "pack" / ".pad").exists()


@pytest.mark.parametrize("flag", ["--v2", "--hybrid"])
def test_swarm_seeds_libtorrent_gets(tmp_path: Path, flag: str) -> None:
    lt = require_libtorrent()
    src = make_tree(tmp_path)
    torrent = tmp_path / "ours.torrent"
    subprocess.run(
        [*procs.SWARM, "create", str(src), "-o", str(torrent), "--piece-length", str(PL), flag, "-q"],
        check=True, timeout=60, env=procs.ENV,
    )  # fmt: skip
    data = torrent.read_bytes()
    assert lt_hashes(lt, data) == our_hashes(data)
    seed, port = procs.start_seed(tmp_path, str(src), "--torrent", str(torrent), *LOCAL_NET)
    try:
        ses = lt_session(lt, alert_mask=lt.alert.category_t.all_categories, **PLAIN_TCP)
        out = tmp_path / "lt_out"
        out.mkdir()
        h = lt_add(lt, ses, data, out)
        h.connect_peer(("127.0.0.1", port))
        failures: list[str] = []

        def done() -> bool:
            failures.extend(hash_failures(lt, ses))
            return bool(h.status().is_seeding)

        # libtorrent creates empty files a moment after it says it seeds
        wait_for(lambda: done() and same_tree(src, out / "pack"), 90, "libtorrent to download from swarm")
        assert failures == []
    finally:
        procs.stop_process(seed)  # type: ignore[arg-type]


def test_swarm_gets_a_btmh_magnet_from_libtorrent(tmp_path: Path) -> None:
    """A `urn:btmh:`-only magnet: the info dict by ut_metadata, the piece
    layers by BEP 52 hash requests (checked against each file's pieces root),
    then the pieces, all from a libtorrent seed."""
    lt = require_libtorrent()
    src = make_tree(tmp_path)
    data = make_lt_torrent(lt, src, PL, v1_only=False, v2_only=True)
    meta = parse_metainfo(data)
    assert meta.version == 2 and meta.piece_layers  # libtorrent has them; the magnet does not
    ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
    h = lt_add(lt, ses, data, tmp_path)
    wait_seeding(h, 30, "libtorrent to check its data")
    magnet = f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2_hex}&x.pe=127.0.0.1:{ses.listen_port()}"
    out = tmp_path / "out"
    r = subprocess.run(
        [*procs.SWARM, "get", magnet, "-o", str(out), *LOCAL_NET, "--json"],
        capture_output=True, text=True, timeout=90, env=procs.ENV, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert same_tree(src, out / "pack")


def test_libtorrent_gets_a_btmh_magnet_from_swarm(tmp_path: Path) -> None:
    """swarm seeds `create --v2`: libtorrent, from the magnet alone, fetches
    the info dict and then the piece layers by hash requests we answer."""
    lt = require_libtorrent()
    src = make_tree(tmp_path)
    torrent = tmp_path / "ours.torrent"
    subprocess.run(
        [*procs.SWARM, "create", str(src), "-o", str(torrent), "--piece-length", str(PL), "--v2", "-q"],
        check=True, timeout=60, env=procs.ENV,
    )  # fmt: skip
    meta = parse_metainfo(torrent.read_bytes())
    seed, port = procs.start_seed(tmp_path, str(src), "--torrent", str(torrent), *LOCAL_NET)
    try:
        ses = lt_session(lt, alert_mask=lt.alert.category_t.all_categories, **PLAIN_TCP)
        out = tmp_path / "lt_out"
        out.mkdir()
        atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2_hex}")
        atp.save_path = str(out)
        h = ses.add_torrent(atp)
        h.connect_peer(("127.0.0.1", port))
        failures: list[str] = []

        def done() -> bool:
            failures.extend(hash_failures(lt, ses))
            return bool(h.status().is_seeding)

        wait_for(lambda: done() and same_tree(src, out / "pack"), 90, "libtorrent to download the magnet")
        assert failures == []
    finally:
        procs.stop_process(seed)  # type: ignore[arg-type]
