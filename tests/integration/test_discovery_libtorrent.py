"""DHT peer discovery against libtorrent, on 127.0.0.1 only.

Every DHT here bootstraps from one node of ours bound to 127.0.0.1;
libtorrent's DHT is told that node and nothing else (its routers list is
replaced by ``dht_bootstrap_nodes``), with LSD, UPnP and NAT-PMP off and its
listen socket on 127.0.0.1. No tracker and no explicit peer: the two sides
can only meet through the DHT.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.create import create_torrent
from swarm.dht import DHTNode
from swarm.session import Session
from tests.helpers.lt import PLAIN_TCP, dht_settings
from tests.helpers.lt import lt_session as lt_base_session
from tests.helpers.wait import until

pytestmark = pytest.mark.interop

LOCAL = "127.0.0.1"


def lt_session(lt: Any, bootstrap_port: int) -> Any:
    return lt_base_session(lt, **dht_settings(bootstrap_port), **PLAIN_TCP)


@pytest.fixture
async def boot() -> AsyncIterator[DHTNode]:
    node = DHTNode(LOCAL, bootstrap=())
    await node.start(wait=False)
    try:
        yield node
    finally:
        await node.close()


def make_torrent(tmp_path: Path, size: int = 1_500_000) -> tuple[Path, Path, bytes]:
    src = tmp_path / "src"
    src.mkdir()
    payload = os.urandom(size)
    (src / "data.bin").write_bytes(payload)
    tfile = tmp_path / "data.bin.torrent"
    tfile.write_bytes(create_torrent(src / "data.bin", piece_length=65536))
    return src, tfile, payload


@pytest.mark.parametrize("source", ["torrent", "bare magnet"])
async def test_libtorrent_leech_finds_swarm_seed_by_dht(tmp_path: Path, boot: DHTNode, source: str) -> None:
    lt = require_libtorrent()
    src, tfile, payload = make_torrent(tmp_path)
    async with Session(LOCAL, 0, enable_dht=True, dht_bootstrap=[(LOCAL, boot.port)]) as s:
        h = await s.add_torrent(tfile, src, seed_only=True)
        await until(lambda: (LOCAL, s.port) in boot.store.get(h.info_hash, 0.0), 15, "swarm's announce")
        ses = lt_session(lt, boot.port)
        try:
            if source == "torrent":
                atp = lt.add_torrent_params()
                atp.ti = lt.torrent_info(str(tfile))
            else:  # the metadata too comes from swarm (ut_metadata)
                atp = lt.parse_magnet_uri(f"magnet:?xt=urn:btih:{h.info_hash.hex()}")
            atp.save_path = str(tmp_path / "lt")
            lh = ses.add_torrent(atp)
            await until(lambda: lh.status().is_seeding, 45, "libtorrent to complete from swarm")
            assert (tmp_path / "lt" / "data.bin").read_bytes() == payload
            assert h.status().uploaded >= len(payload)
        finally:
            del ses


async def test_swarm_leech_finds_libtorrent_seed_by_dht(tmp_path: Path, boot: DHTNode) -> None:
    lt = require_libtorrent()
    src, tfile, payload = make_torrent(tmp_path)
    ses = lt_session(lt, boot.port)
    try:
        lt_port = await until(ses.listen_port, 10, "libtorrent to listen")
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(tfile))
        atp.save_path = str(src)
        lh = ses.add_torrent(atp)
        await until(lambda: lh.status().is_seeding, 15, "libtorrent to check its data")
        ih = bytes(atp.ti.info_hashes().v1.to_bytes())
        # libtorrent bootstraps through our node, then announces there.
        await until(lambda: any(p == lt_port for _, p in boot.store.get(ih, 0.0)), 45, "libtorrent's announce")
        out = tmp_path / "out"
        out.mkdir()
        async with Session(LOCAL, 0, enable_dht=True, dht_bootstrap=[(LOCAL, boot.port)]) as s:
            gh = await s.add_torrent(tfile, out)
            connected: list[dict[str, Any]] = []

            async def collect() -> None:
                async for kind, fields in gh.events():
                    if kind == "peer" and fields.get("action") == "connected":
                        connected.append(fields)

            task = asyncio.ensure_future(collect())
            try:
                await asyncio.wait_for(gh.wait_complete(), 30)
            finally:
                task.cancel()
            assert (out / "data.bin").read_bytes() == payload
            assert any(f["source"] == "dht" and f["address"] == f"{LOCAL}:{lt_port}" for f in connected), connected
            st = gh.status()
            assert st.dht_nodes is not None and st.dht_nodes >= 1
    finally:
        del ses


async def test_swarm_get_bare_magnet_from_libtorrent_seed_by_dht(tmp_path: Path, boot: DHTNode) -> None:
    """`swarm get 'magnet:?xt=urn:btih:HASH'` (no tracker, no x.pe): metadata and data
    from a libtorrent seed that only the DHT knows of."""
    import subprocess
    import sys

    lt = require_libtorrent()
    src, tfile, payload = make_torrent(tmp_path)
    ses = lt_session(lt, boot.port)
    try:
        lt_port = await until(ses.listen_port, 10, "libtorrent to listen")
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(str(tfile))
        atp.save_path = str(src)
        lh = ses.add_torrent(atp)
        await until(lambda: lh.status().is_seeding, 15, "libtorrent to check its data")
        ih = bytes(atp.ti.info_hashes().v1.to_bytes())
        await until(lambda: any(p == lt_port for _, p in boot.store.get(ih, 0.0)), 45, "libtorrent's announce")
        out = tmp_path / "out"
        out.mkdir()
        env = {**os.environ, "SWARM_STATE_DIR": str(tmp_path / "state")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "swarm", "get", f"magnet:?xt=urn:btih:{ih.hex()}", "-o", str(out),
            "--host", LOCAL, "--port", "0", "--dht-bootstrap", f"{LOCAL}:{boot.port}", "-q",
            stdout=subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), 60)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0, err.decode()
        assert (out / "data.bin").read_bytes() == payload
    finally:
        del ses
