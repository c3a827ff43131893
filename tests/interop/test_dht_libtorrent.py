"""Our DHT nodes and libtorrent's DHT on 127.0.0.1, in both directions."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_libtorrent

from swarm.dht import DHTNode
from tests.helpers.lt import dht_settings, lt_session
from tests.helpers.wait import until as _until

pytestmark = pytest.mark.interop

LOCAL = "127.0.0.1"


def _lt_session(lt: Any, bootstrap_port: int) -> Any:
    return lt_session(
        lt,
        **dht_settings(bootstrap_port),
        alert_mask=lt.alert_category.dht | lt.alert_category.dht_operation,
    )


@pytest.fixture
async def our_nodes() -> AsyncIterator[tuple[DHTNode, DHTNode]]:
    a = DHTNode(LOCAL)
    await a.start()
    b = DHTNode(LOCAL, bootstrap=[(LOCAL, a.port)])
    await b.start()
    try:
        yield a, b
    finally:
        await b.close()
        await a.close()


def _lt_in_table(node: DHTNode, lt_port: int) -> bool:
    return any(n.port == lt_port for n in node.table.nodes())


async def test_we_find_libtorrents_announce(
    our_nodes: tuple[DHTNode, DHTNode], tmp_path: Path
) -> None:
    lt = require_libtorrent()
    a, b = our_nodes
    ses = _lt_session(lt, a.port)
    try:
        lt_port = await _until(ses.listen_port, 10, "libtorrent to listen")
        info_hash = hashlib.sha1(b"libtorrent announces").digest()
        atp = lt.add_torrent_params()
        atp.info_hashes = lt.info_hash_t(lt.sha1_hash(info_hash))
        atp.save_path = str(tmp_path)
        ses.add_torrent(atp)
        # libtorrent bootstraps through A, then announces to the closest nodes it knows.
        await _until(lambda: _lt_in_table(a, lt_port), 20, "libtorrent in our routing table")

        async def found() -> bool:
            peers = await b.get_peers(info_hash, timeout=3.0)
            return any(port == lt_port for _host, port in peers)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + 25
        while not await found():
            assert loop.time() < deadline, (
                f"no announce from libtorrent (A stores {len(a.store)}, B stores {len(b.store)})"
            )
            await asyncio.sleep(0.2)
    finally:
        del ses


async def test_libtorrent_finds_our_announce(our_nodes: tuple[DHTNode, DHTNode]) -> None:
    lt = require_libtorrent()
    a, b = our_nodes
    ses = _lt_session(lt, a.port)
    try:
        lt_port = await _until(ses.listen_port, 10, "libtorrent to listen")
        await _until(lambda: _lt_in_table(a, lt_port), 20, "libtorrent in our routing table")
        info_hash = hashlib.sha1(b"we announce").digest()
        acks = await b.announce(info_hash, 34567, timeout=10.0)
        # B knows A and, through A, libtorrent: both took our token-bearing
        # announce_peer (libtorrent answers a bad token with an error, not a reply).
        assert acks >= 2
        found: set[tuple[str, int]] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 25
        next_query = 0.0
        while (LOCAL, 34567) not in found:
            assert loop.time() < deadline, f"libtorrent found only {found}"
            if loop.time() >= next_query:
                ses.dht_get_peers(lt.sha1_hash(info_hash))
                next_query = loop.time() + 3.0
            for alert in ses.pop_alerts():
                if (
                    isinstance(alert, lt.dht_get_peers_reply_alert)
                    and bytes(alert.info_hash.to_bytes()) == info_hash
                ):
                    found.update((str(h), int(p)) for h, p in alert.peers())
            await asyncio.sleep(0.05)
        # libtorrent's get_peers reached us over KRPC.
        assert a.stats["queries"] > 0 and b.stats["queries"] >= 0
    finally:
        del ses
