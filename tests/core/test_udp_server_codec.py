"""The server side of BEP 15: stateless connection ids, answers by family, bounded errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core import announce as a

SECRET = b"s" * 32
HERE = a.pack_peer("10.0.0.1", 6881)[:-2]  # ids are bound to the IP address


def test_an_id_is_accepted_from_its_address_for_one_to_two_epochs() -> None:
    ids = a.UdpConnectionIds(SECRET)
    cid = ids.issue(HERE, 1000.0)
    assert ids.check(cid, HERE, 1000.0)
    assert ids.check(cid, HERE, 1000.0 + 59.0)  # a client reuses it for a minute
    epoch_end = (1000.0 // 60 + 1) * 60
    assert ids.check(cid, HERE, epoch_end + 59.9)  # still the next epoch
    assert not ids.check(cid, HERE, epoch_end + 60.0)  # two epochs on: expired
    assert not ids.check(cid, HERE, 1000.0 - 120.0)  # from the future is no better


def test_an_id_is_refused_from_another_address_or_secret() -> None:
    ids = a.UdpConnectionIds(SECRET)
    cid = ids.issue(HERE, 1000.0)
    assert not ids.check(cid, a.pack_peer("10.0.0.2", 6881)[:-2], 1000.0)  # other address
    assert not ids.check(cid, a.pack_peer("::a00:1", 1)[:-2], 1000.0)  # other family
    assert ids.check(cid, a.pack_peer("::ffff:10.0.0.1", 1)[:-2], 1000.0)  # the same, mapped
    assert not a.UdpConnectionIds(b"t" * 32).check(cid, HERE, 1000.0)  # another tracker
    assert a.UdpConnectionIds(SECRET).check(cid, HERE, 1000.0)  # a sibling worker accepts it


def test_secret_length_is_checked() -> None:
    with pytest.raises(ValueError):
        a.UdpConnectionIds(b"short")


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=4, max_size=4) | st.binary(min_size=16, max_size=16),
    st.floats(0, 4e9),
)
def test_a_guessed_id_is_refused(guess: int, addr: bytes, now: float) -> None:
    ids = a.UdpConnectionIds(SECRET)
    real = ids.issue(addr, now)
    assert ids.check(guess, addr, now) == (guess in (real, ids.issue(addr, now - a.UDP_ID_EPOCH)))


@given(st.integers(0, 2**32 - 1), st.text(max_size=600), st.integers(0, 2000))
def test_error_answers_fit_the_limit(tid: int, message: str, limit: int) -> None:
    out = a.udp_encode_error(tid, message, limit)
    assert 8 <= len(out) <= max(8, limit, 0)
    assert len(out) <= 8 + 512
    assert out[:8] == (3).to_bytes(4, "big") + tid.to_bytes(4, "big")


def test_answer_peers_are_of_the_askers_family() -> None:
    v4, v6 = a.pack_peer("10.0.0.2", 1), a.pack_peer("2001:db8::1", 2)
    assert a.udp_peers_for([v4, v6, v4], ipv6=False) == [v4, v4]
    assert a.udp_peers_for([v4, v6], ipv6=True) == [v6]
    resp = a.udp_encode_announce(9, 60, 1, 2, a.udp_peers_for([v4, v6], ipv6=True))
    assert a.udp_parse_announce(resp, 9, ipv6=True).peers == [("2001:db8::1", 2)]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_request_parser_raises_only_bad_announce(data: bytes) -> None:
    try:
        req = a.udp_parse_request(data)
    except a.BadAnnounce:
        return
    assert req.action in (a.UDP_CONNECT, a.UDP_ANNOUNCE, a.UDP_SCRAPE)
    if req.action == a.UDP_SCRAPE:
        assert 1 <= len(req.info_hashes) <= a.UDP_MAX_SCRAPE_HASHES


@settings(max_examples=200, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.binary(min_size=20, max_size=20),
    st.sampled_from(["", "started", "stopped", "completed"]),
    st.integers(-1, 10_000),
    st.integers(1, 65535),
)
def test_announce_request_round_trip(
    cid: int, tid: int, ih: bytes, event: str, numwant: int, port: int
) -> None:
    req = a.udp_parse_request(
        a.udp_announce_request(
            cid, tid, ih, b"-SW0001-" + b"x" * 12, 1, 2, 3, event, 7, numwant, port
        )
    )
    assert (req.action, req.tid, req.connection_id) == (a.UDP_ANNOUNCE, tid, cid)
    assert req.announce is not None
    assert (req.announce.info_hash, req.announce.event, req.announce.port) == (ih, event, port)
    assert 0 <= req.announce.numwant <= a.MAX_NUMWANT
