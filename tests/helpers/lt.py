"""libtorrent sessions and torrents for interop tests (pass the module from require_libtorrent())."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tests.helpers.wait import wait_for

LOCAL = "127.0.0.1"

# Local only: no DHT, LSD, UPnP or NAT-PMP; listen on loopback; several peers per IP.
BASE_SETTINGS: dict[str, Any] = {
    "listen_interfaces": f"{LOCAL}:0",
    "enable_dht": False,
    "enable_lsd": False,
    "enable_upnp": False,
    "enable_natpmp": False,
    "allow_multiple_connections_per_ip": True,
}

# TCP only (swarm has no uTP; libtorrent would try it first) and plain: these tests are about
# the wire protocol, not MSE (that is tests/interop/test_encryption_libtorrent.py).
PLAIN_TCP: dict[str, Any] = {
    "enable_outgoing_utp": False,
    "enable_incoming_utp": False,
    "out_enc_policy": 2,
}


def dht_settings(bootstrap_port: int, host: str = LOCAL) -> dict[str, Any]:
    """DHT on, bootstrapped from host:bootstrap_port, with the loopback restrictions lifted."""
    return {
        "enable_dht": True,
        "dht_bootstrap_nodes": f"{host}:{bootstrap_port}",
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_ignore_dark_internet": False,
        "dht_prefer_verified_node_ids": False,
    }


def lt_session(lt: Any, **overrides: Any) -> Any:
    """A session with BASE_SETTINGS, each override replacing or adding one setting."""
    return lt.session({**BASE_SETTINGS, **overrides})


def make_lt_torrent(
    lt: Any,
    path: Path,
    piece_length: int,
    *,
    v1_only: bool = True,
    v2_only: bool = False,
    trackers: Iterable[str] = (),
) -> bytes:
    """A .torrent made by libtorrent for the file or directory at path (hashed from its parent):
    v1 by default, hybrid with ``v1_only=False``, v2 only with ``v2_only=True``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        fs = lt.file_storage()
        lt.add_files(fs, str(path))
        flags = lt.create_torrent.v2_only if v2_only else lt.create_torrent.v1_only if v1_only else 0
        ct = lt.create_torrent(fs, piece_length, flags=flags)
        for url in trackers:
            ct.add_tracker(url)
        lt.set_piece_hashes(ct, str(path.parent))
        return bytes(lt.bencode(ct.generate()))


def wait_seeding(h: Any, timeout: float, what: str = "libtorrent to start seeding", interval: float = 0.05) -> None:
    """Poll torrent handle h until it seeds; fail after timeout seconds."""
    wait_for(lambda: h.status().is_seeding, timeout, what, interval)
