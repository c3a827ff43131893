from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.peerid import client_name, make_peer_id


def test_make_peer_id_shape() -> None:
    pid = make_peer_id()
    assert len(pid) == 20 and pid.startswith(b"-SW0100-")
    assert pid[8:].isalnum()
    assert make_peer_id() != make_peer_id()


def test_make_peer_id_deterministic_with_rand() -> None:
    assert make_peer_id("0203", bytes(range(12))) == b"-SW0203-0123456789AB"
    with pytest.raises(ValueError):
        make_peer_id("1", bytes(12))
    with pytest.raises(ValueError):
        make_peer_id("0100", bytes(5))


@pytest.mark.parametrize(
    ("pid", "name"),
    [
        (b"-SW0100-abcdefghijkl", "swarm 0.1.0"),
        (b"-LT2010-abcdefghijkl", "libtorrent (Rasterbar) 2.0.1"),
        (b"-LT1C20-abcdefghijkl", "libtorrent (Rasterbar) 1.12.2"),
        (b"-lt0D60-abcdefghijkl", "libTorrent (rakshasa) 0.13.6"),
        (b"-TR3000-abcdefghijkl", "Transmission 3.0.0"),
        (b"-TR300Z-abcdefghijkl", "Transmission 3.0.0 (dev)"),
        (b"-qB4631-abcdefghijkl", "qBittorrent 4.6.3.1"),
        (b"-DE2110-abcdefghijkl", "Deluge 2.1.1"),
        (b"-AZ5770-abcdefghijkl", "Vuze 5.7.7"),
        (b"-UT355W-abcdefghijkl", "µTorrent 3.5.5 (W)"),
        (b"-BC0210-abcdefghijkl", "BitComet 0.2.1"),
        (b"A2-1-36-0-abcdefghij", "aria2 1.36.0"),
        (b"M7-2-3--abcdefghijkl", "BitTorrent (Mainline) 7.2.3"),
        (b"M4-20-8-abcdefghijkl", "BitTorrent (Mainline) 4.20.8"),
        (b"S58B-----abcdefghijk", "Shadow's client 5.8.11"),
        (b"T03I--abcdefghijklmn", "BitTornado 0.3.18"),
        (b"-ZZ1234-abcdefghijkl", "unknown -ZZ- client 1234"),
        (b"\x00\x01\x02\x03\x04\x05\x06\x07abcdefghijkl", "unknown (0001020304050607)"),
    ],
)
def test_client_names(pid: bytes, name: str) -> None:
    assert client_name(pid) == name


@given(st.binary(min_size=0, max_size=40))
def test_client_name_never_raises(pid: bytes) -> None:
    assert isinstance(client_name(pid), str)
