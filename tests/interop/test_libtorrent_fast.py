"""BEP 6 with libtorrent, seen from swarm's side (issue 7): a seed announces
itself with have-all and a peer with nothing with have-none, both ways."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent
from test_libtorrent_transfer import lt_add, lt_session

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent
from tests.helpers.wait import until

pytestmark = pytest.mark.interop
#: bytes/s: a transfer takes ~2 s instead of ~20 ms (a seed and a finished leech hang up)
RATE = 1024 * 1024


def _peer_with_haves(torrent: Any) -> Any:
    return next((p for p in torrent.peers if p.have_sent and p.have_received), None)


def _make(tmp_path: Path) -> tuple[Path, bytes, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(2 * 1024 * 1024 + 5)
    (src / "data.bin").write_bytes(payload)
    data = create_torrent(src / "data.bin", piece_length=65536)
    (tmp_path / "t.torrent").write_bytes(data)
    return src, payload, data


async def test_swarm_seed_sends_have_all_to_libtorrent_leech(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src, payload, data = _make(tmp_path)
    out = tmp_path / "lt_out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as s:
        seed = await s.add_torrent(data, src, seed_only=True)
        ses = lt_session(lt)
        h = lt_add(lt, ses, tmp_path / "t.torrent", out)
        h.set_download_limit(RATE)  # the connection lives long enough to be looked at
        await until(lambda: h.status().has_metadata and not h.status().paused, 20, "libtorrent's torrent")
        h.connect_peer(("127.0.0.1", s.port or 0))
        peer = await until(lambda: _peer_with_haves(seed._t), 30, "libtorrent's connection")
        assert peer.supports_fast
        assert peer.have_sent == "have_all"  # we, the seed
        assert peer.have_received == "have_none"  # libtorrent, empty
        await until(lambda: h.status().is_seeding, 60, "libtorrent to finish")
    assert (out / "data.bin").read_bytes() == payload


async def test_swarm_leech_receives_have_all_from_libtorrent_seed(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src, payload, data = _make(tmp_path)
    ses = lt_session(lt)
    h = lt_add(lt, ses, tmp_path / "t.torrent", src)
    h.set_upload_limit(RATE)  # the connection lives long enough to be looked at
    await until(lambda: h.status().is_seeding, 20, "libtorrent to check its data")
    out = tmp_path / "out"
    out.mkdir()
    async with Session("127.0.0.1", 0) as s:
        leech = await s.add_torrent(parse_metainfo(data), out, peers=[("127.0.0.1", ses.listen_port())])
        peer = await until(lambda: _peer_with_haves(leech._t), 20, "the connection to libtorrent")
        assert peer.supports_fast
        assert peer.have_received == "have_all"  # libtorrent, the seed
        assert peer.have_sent == "have_none"  # we, empty
        await leech.wait_complete(timeout=60)
    assert (out / "data.bin").read_bytes() == payload
