"""libtorrent and `swarm daemon` (issue 23): libtorrent downloads three torrents the daemon
seeds on its one peer port, and the daemon downloads from a libtorrent seed (magnet with x.pe)."""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest
from conftest import require_libtorrent

from tests.helpers.daemon import daemon, poll_torrent
from tests.helpers.lt import PLAIN_TCP, lt_session, make_lt_torrent, wait_seeding
from tests.helpers.wait import until

pytestmark = pytest.mark.interop


async def test_libtorrent_gets_three_torrents_from_one_daemon_port(tmp_path: Path) -> None:
    lt = require_libtorrent()
    root = tmp_path / "d"
    root.mkdir()
    payloads = {name: os.urandom(size) for name, size in (("a.bin", 400_000), ("b.bin", 90_000), ("c.bin", 5_000))}
    for name, data in payloads.items():
        (root / name).write_bytes(data)
    async with daemon(root) as d, aiohttp.ClientSession() as http:
        ihs = []
        for name in payloads:
            async with http.post(f"{d.url}/api/torrents", json={"seed": name}) as r:
                assert r.status == 201
                ihs.append((await r.json())["info_hash"])
        for ih in ihs:
            await poll_torrent(http, d.url, ih, "seeding")
        ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
        out = tmp_path / "lt"
        out.mkdir()
        handles = []
        for name in payloads:
            p = lt.add_torrent_params()
            p.ti = lt.torrent_info(str(root / f"{name}.torrent"))
            p.save_path = str(out)
            h = ses.add_torrent(p)
            h.connect_peer(("127.0.0.1", d.peer_port))
            handles.append(h)
        await until(lambda: all(h.status().is_seeding for h in handles), 60, "libtorrent to get all three")
        for name, data in payloads.items():
            assert (out / name).read_bytes() == data
        async with http.get(f"{d.url}/api/torrents") as r:
            assert sum(t["uploaded"] for t in await r.json()) >= sum(map(len, payloads.values()))


async def test_daemon_downloads_from_libtorrent(tmp_path: Path) -> None:
    lt = require_libtorrent()
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(700_000)
    (src / "lt.bin").write_bytes(payload)
    data = make_lt_torrent(lt, src / "lt.bin", 32768)
    ses = lt_session(lt, alert_mask=0, **PLAIN_TCP, in_enc_policy=2)
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(lt.bdecode(data))
    p.save_path = str(src)
    h = ses.add_torrent(p)
    wait_seeding(h, 20)
    root = tmp_path / "d"
    root.mkdir()
    async with daemon(root) as d, aiohttp.ClientSession() as http:
        # the API adds peers only through a magnet's x.pe: libtorrent's address goes there
        ih = p.ti.info_hash().to_bytes().hex()
        magnet = f"magnet:?xt=urn:btih:{ih}&dn=lt.bin&x.pe=127.0.0.1:{ses.listen_port()}"
        async with http.post(f"{d.url}/api/torrents", json={"magnet": magnet}) as r:
            assert r.status == 201, await r.text()
        await poll_torrent(http, d.url, ih, "seeding")
    assert (root / "lt.bin").read_bytes() == payload
