"""Magnet URIs (BEP 9): parsing hostile input, building, round trips."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.magnet import MAX_ITEMS, Magnet, parse_magnet, parse_peer
from swarm.errors import MagnetError

H = bytes(range(20))
HEX = H.hex()


def test_full_link() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX.upper()}&dn=My+File%20x&tr=http%3A%2F%2Ft%2Fa"
        "&tr=udp://u:1&x.pe=127.0.0.1:6881&x.pe=[::1]:7000&ws=http://w/f&so=0,2,4-6&foo=bar"
    )
    m = parse_magnet(uri)
    assert m.info_hash == H
    assert m.name == "My File x"
    assert m.trackers == ["http://t/a", "udp://u:1"]
    assert m.peers == [("127.0.0.1", 6881), ("::1", 7000)]
    assert m.web_seeds == ["http://w/f"]
    assert m.select_only == [0, 2, 4, 5, 6]


def test_base32_and_case() -> None:
    b32 = base64.b32encode(H).decode()
    assert parse_magnet(f"MAGNET:?XT=urn:BTIH:{b32.lower()}").info_hash == H
    assert parse_magnet(f"magnet:?xt=urn:btih:{b32}").info_hash == H


def test_minimal_defaults() -> None:
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}")
    assert (m.name, m.trackers, m.peers, m.web_seeds, m.select_only) == (None, [], [], [], None)


def test_hybrid_link_uses_btih() -> None:
    m = parse_magnet(f"magnet:?xt=urn:btmh:1220{'ab' * 32}&xt=urn:btih:{HEX}")
    assert m.info_hash == H and m.info_hash_v2 == b"\xab" * 32 and not m.v2_only
    assert m.to_uri() == f"magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{'ab' * 32}"


def test_v2_only_link_uses_the_truncated_v2_hash() -> None:
    v2 = bytes(range(32))
    m = parse_magnet(f"magnet:?xt=urn:btmh:1220{v2.hex().upper()}&dn=x")
    assert (m.info_hash, m.info_hash_v2, m.v2_only) == (v2[:20], v2, True)
    assert m.to_uri() == f"magnet:?xt=urn:btmh:1220{v2.hex()}&dn=x"
    assert parse_magnet(m.to_uri()) == m


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("magnet:?dn=x", "no urn:btih or urn:btmh info-hash"),
        (f"magnet:?xt=urn:btmh:1114{'ab' * 20}", "bad v2 info-hash"),  # SHA-1 multihash
        (f"magnet:?xt=urn:btmh:1220{'ab' * 31}", "bad v2 info-hash"),
        (f"magnet:?xt=urn:btmh:{'ab' * 32}", "bad v2 info-hash"),
        (f"magnet:?xt=urn:btmh:1220{'ab' * 32}&xt=urn:btmh:1220{'cd' * 32}", "two different btmh"),
        (f"http://x/?xt=urn:btih:{HEX}", "not a magnet link"),
        ("magnet:?xt=urn:btih:zz" + "0" * 38, "bad info-hash"),
        ("magnet:?xt=urn:btih:" + "a" * 39, "bad info-hash"),
        ("magnet:?xt=urn:btih:" + "1" * 32, "bad info-hash"),  # 1 is not base32
        (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'0' * 40}", "two different btih"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:0", "port must be 1-65535"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:70000", "port must be 1-65535"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4", "expected host:port"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=::1:80", "expected host:port"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=[::1]80", "expected [v6]:port"),
        (f"magnet:?xt=urn:btih:{HEX}&so=3-1", "bad file selection"),
        (f"magnet:?xt=urn:btih:{HEX}&so=a", "bad file selection"),
        (f"magnet:?xt=urn:btih:{HEX}&so=0-99999999", "bad file selection"),
        (f"magnet:?xt=urn:btih:{HEX}&so=0-20000", "more than"),
        ("magnet:?xt=urn:btih:" + HEX + "&dn=" + "x" * 70000, "longer than"),
    ],
)
def test_rejections(uri: str, message: str) -> None:
    with pytest.raises(MagnetError, match=re.escape(message)):
        parse_magnet(uri)


def test_bounded_lists() -> None:
    trackers = "&".join(f"tr=http://t{i}/" for i in range(MAX_ITEMS + 1))
    with pytest.raises(MagnetError, match="more than 100 trackers"):
        parse_magnet(f"magnet:?xt=urn:btih:{HEX}&{trackers}")
    dup = "&".join("tr=http://t/" for _ in range(500))
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}&{dup}").trackers == ["http://t/"]


def test_parse_peer() -> None:
    assert parse_peer("localhost:1") == ("localhost", 1)
    assert parse_peer(" [::1]:65535 ") == ("::1", 65535)
    with pytest.raises(MagnetError):
        parse_peer(":80")


names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
urls = st.builds(
    lambda s: f"http://h/{s}", st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
)


@given(
    st.binary(min_size=20, max_size=20),
    names | st.none(),
    st.lists(urls, max_size=5, unique=True),
    st.lists(
        st.tuples(st.sampled_from(["127.0.0.1", "::1", "host.lan"]), st.integers(1, 65535)),
        max_size=5,
        unique=True,
    ),
    st.lists(urls, max_size=3, unique=True),
    st.lists(st.integers(0, 500), max_size=10, unique=True).map(sorted) | st.none(),
)
def test_round_trip(
    h: bytes,
    name: str | None,
    tr: list[str],
    peers: list[tuple[str, int]],
    ws: list[str],
    so: list[int] | None,
) -> None:
    tr = [t for t in tr if t.strip() == t]
    ws = [w for w in ws if w.strip() == w]
    m = Magnet(h, name, tr, peers, ws, so or None)
    assert parse_magnet(m.to_uri()) == m


@settings(max_examples=300)
@given(st.text(max_size=300))
def test_random_text_raises_only_magnet_error(tail: str) -> None:
    for uri in (tail, "magnet:?" + tail, f"magnet:?xt=urn:btih:{HEX}&" + tail):
        try:
            parse_magnet(uri)
        except MagnetError:
            pass
