"""Web seeds with libtorrent: a torrent whose url-list libtorrent wrote, and libtorrent as a
peer while swarm also fetches from the web seed (127.0.0.1 only)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
from conftest import require_libtorrent

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from tests.helpers.lt import PLAIN_TCP, lt_session
from tests.helpers.wait import until
from tests.helpers.webseed_server import Origin

pytestmark = pytest.mark.interop


def lt_torrent_with_url_seed(lt: object, path: Path, url: str, piece_length: int) -> bytes:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()  # type: ignore[attr-defined]
        lt.add_files(fs, str(path))  # type: ignore[attr-defined]
        ct = lt.create_torrent(fs, piece_length, flags=lt.create_torrent.v1_only)  # type: ignore[attr-defined]
        ct.add_url_seed(url)
        lt.set_piece_hashes(ct, str(path.parent))  # type: ignore[attr-defined]
        return bytes(lt.bencode(ct.generate()))  # type: ignore[attr-defined]


async def test_libtorrent_url_list_and_libtorrent_peer_alongside_the_web_seed(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src = tmp_path / "src"
    tree = src / "lt tree"
    (tree / "sub").mkdir(parents=True)
    first = os.urandom(700_000)
    (tree / "a 1.bin").write_bytes(first)
    (tree / "sub" / "b#2.bin").write_bytes(os.urandom(900_001))
    # libtorrent holds only the first file, and only serves (upload mode)
    lt_dir = tmp_path / "lt"
    (lt_dir / "lt tree").mkdir(parents=True)
    (lt_dir / "lt tree" / "a 1.bin").write_bytes(first)
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(src) as origin:
        data = lt_torrent_with_url_seed(lt, tree, origin.url, 65536)
        meta = parse_metainfo(data)
        assert meta.url_list == [origin.url] and meta.multi_file
        ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
        p = lt.add_torrent_params()
        p.ti = lt.torrent_info(lt.bdecode(data))
        p.save_path = str(lt_dir)
        p.flags |= lt.torrent_flags.upload_mode
        h = ses.add_torrent(p)
        h.remove_url_seed(origin.url)  # libtorrent must not fetch from the origin itself
        await until(lambda: h.status().num_pieces > 0 and h.status().state != lt.torrent_status.checking_files,
                    20, "libtorrent to check its data")
        lt_pieces = h.status().num_pieces
        assert 0 < lt_pieces < meta.num_pieces
        async with Session("127.0.0.1", 0) as s:
            handle = await s.add_torrent(meta, out, peers=[("127.0.0.1", ses.listen_port())])
            await handle.wait_complete(timeout=60)
        await until(lambda: h.status().total_payload_upload > 0, 10, "libtorrent's upload count")
    for f in ("a 1.bin", "sub/b#2.bin"):
        assert (out / "lt tree" / f).read_bytes() == (tree / f).read_bytes()
    # the origin served what libtorrent lacked, not the pieces libtorrent had
    assert 0 < origin.served < meta.total_length
