"""Tracker codecs: URL building, query parsing, responses, BEP 15 packets."""

from __future__ import annotations

import random
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core import announce as a
from swarm.core.bencode import decode, encode
from swarm.errors import ProtocolError, SwarmError

IH = bytes(range(20))
PID = b"-SW0001-" + b"%&+ =?\x00\xff\x80abc"


def query_of(url: str) -> str:
    return urlsplit(url).query


def test_build_and_parse_round_trip_binary_bytes() -> None:
    url = a.build_announce_url(
        "http://t.example:6969/announce", IH, PID, 6881, 1, 2, 3, "started", numwant=30, key="k1"
    )
    assert "%25" in url and "%00" in url
    req = a.parse_announce_query(query_of(url))
    assert req.info_hash == IH and req.peer_id == PID
    assert (req.port, req.uploaded, req.downloaded, req.left) == (6881, 1, 2, 3)
    assert req.event == "started" and req.numwant == 30 and req.key == b"k1"
    assert req.compact and req.no_peer_id


def test_existing_query_preserved() -> None:
    url = a.build_announce_url("http://h/announce?passkey=abc", IH, PID, 1, 0, 0, 0)
    assert query_of(url).startswith("passkey=abc&info_hash=")
    assert a.parse_announce_query(query_of(url)).info_hash == IH


def test_percent_25_is_a_literal_percent_byte() -> None:
    ih = b"%" * 20
    q = "info_hash=" + "%25" * 20 + "&peer_id=" + "%41" * 20 + "&port=1"
    req = a.parse_announce_query(q)
    assert req.info_hash == ih and req.peer_id == b"A" * 20


def base(**over: str) -> str:
    params = {
        "info_hash": "%01" * 20,
        "peer_id": "x" * 20,
        "port": "6881",
        "uploaded": "0",
        "downloaded": "0",
        "left": "10",
    }
    params.update(over)
    return "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


def test_defaults() -> None:
    req = a.parse_announce_query("info_hash=" + "%01" * 20 + "&peer_id=" + "x" * 20 + "&port=5")
    assert req.numwant == a.DEFAULT_NUMWANT and req.compact and not req.no_peer_id
    assert req.event == "" and req.left == 0 and req.ip is None


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "missing info_hash"),
        (base(info_hash="%01" * 19), "info_hash"),
        (base(info_hash="%01" * 21), "info_hash"),
        (base(peer_id="short"), "peer_id"),
        (base(port="0"), "port"),
        (base(port="65536"), "port"),
        (base(port="-1"), "port"),
        (base(port="abc"), "port"),
        (base(port="%B2"), "port"),
        (base(left="%C2%B2"), "left"),
        (base(port=""), "port"),
        (base(left="1e5"), "left"),
        (base(uploaded="-5"), "uploaded"),
        (base(downloaded="9" * 30), "downloaded"),
        (base(left=str(2**63)), "left"),
        (base(event="exploded"), "event"),
        (base(numwant="lots"), "numwant"),
        (base(compact="2"), "compact"),
        (base(ip="not-an-ip"), "ip"),
        (base(key="k" * 65), "key"),
        (base() + "&port=7", "duplicate"),
        (base() + "&x=" + "y" * a.MAX_QUERY_LENGTH, "longer"),
        ("&".join(["a=b"] * (a.MAX_PARAMS + 1)), "parameters"),
        ("info_hash=\xff", "ASCII"),
    ],
)
def test_bad_queries(query: str, reason: str) -> None:
    with pytest.raises(a.BadAnnounce, match=reason):
        a.parse_announce_query(query)


def test_escaped_digits_are_numbers() -> None:
    assert a.parse_announce_query(base(port="%36%38%38%31")).port == 6881


def test_numwant_capped_and_events() -> None:
    assert a.parse_announce_query(base(numwant="100000")).numwant == a.MAX_NUMWANT
    assert a.parse_announce_query(base(numwant="0")).numwant == 0
    for ev in ("started", "stopped", "completed", "paused", ""):
        assert a.parse_announce_query(base(event=ev)).event == ev
    assert a.parse_announce_query(base(event="empty")).event == ""
    r = a.parse_announce_query(base(ip="::1", compact="0", no_peer_id="1"))
    assert r.ip == "::1" and not r.compact and r.no_peer_id


@settings(max_examples=300)
@given(st.binary(max_size=600))
def test_query_parser_never_escapes_our_errors(raw: bytes) -> None:
    try:
        a.parse_announce_query(raw)
    except a.BadAnnounce:
        pass
    try:
        a.parse_scrape_query(raw)
    except a.BadAnnounce:
        pass


@settings(max_examples=200)
@given(
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=20, max_size=20),
    st.integers(1, 65535),
    st.integers(0, a.MAX_COUNTER),
    st.sampled_from(a.EVENTS),
)
def test_url_round_trip(ih: bytes, pid: bytes, port: int, left: int, event: str) -> None:
    url = a.build_announce_url("http://h:1/announce", ih, pid, port, 0, 0, left, event)
    req = a.parse_announce_query(query_of(url))
    assert (req.info_hash, req.peer_id, req.port, req.left, req.event) == (
        ih,
        pid,
        port,
        left,
        event,
    )


def test_scrape_query_and_url() -> None:
    assert a.scrape_url_for("http://h/announce") == "http://h/scrape"
    assert a.scrape_url_for("http://h/x/announce.php?k=1") == "http://h/x/scrape.php?k=1"
    assert a.scrape_url_for("http://h/a") is None
    url = a.build_scrape_url("http://h/scrape", [IH, b"\x25" * 20])
    assert a.parse_scrape_query(query_of(url)) == [IH, b"%" * 20]
    assert a.parse_scrape_query("") == []
    with pytest.raises(a.BadAnnounce):
        a.parse_scrape_query("info_hash=abc")


PEERS = [
    (b"A" * 20, a.pack_peer("10.0.0.1", 6881)),
    (b"B" * 20, a.pack_peer("::1", 51413)),
    (b"C" * 20, a.pack_peer("127.0.0.1", 1)),
]


def test_compact_response_round_trip() -> None:
    data = a.encode_announce_response(
        PEERS, interval=1800, min_interval=60, complete=2, incomplete=5, warning="hi"
    )
    d = decode(data)
    assert len(d[b"peers"]) == 12 and len(d[b"peers6"]) == 18
    resp = a.parse_announce_response(data)
    assert resp.interval == 1800 and resp.min_interval == 60
    assert (resp.complete, resp.incomplete, resp.warning) == (2, 5, "hi")
    assert sorted(resp.peers) == sorted([("10.0.0.1", 6881), ("127.0.0.1", 1), ("::1", 51413)])


def test_dict_response_with_and_without_peer_ids() -> None:
    d = decode(a.encode_announce_response(PEERS, interval=10, compact=False))
    assert d[b"peers"][0] == {b"ip": b"10.0.0.1", b"port": 6881, b"peer id": b"A" * 20}
    d2 = decode(a.encode_announce_response(PEERS, interval=10, compact=False, no_peer_id=True))
    assert b"peer id" not in d2[b"peers"][0]
    resp = a.parse_announce_response(encode(d))
    assert ("::1", 51413) in resp.peers and len(resp.peers) == 3


def test_client_parse_failures() -> None:
    with pytest.raises(a.TrackerFailure, match="go away"):
        a.parse_announce_response(a.encode_failure("go away"))
    with pytest.raises(ProtocolError):
        a.parse_announce_response(b"<html>")
    with pytest.raises(ProtocolError):
        a.parse_announce_response(encode([1]))
    with pytest.raises(ProtocolError, match="interval"):
        a.parse_announce_response(encode({b"peers": b""}))
    big = encode({b"interval": 10**12, b"peers": b"\x01\x02\x03\x04\x00\x01" * 5000 + b"xx"})
    resp = a.parse_announce_response(big)
    assert resp.interval == a.MAX_INTERVAL and len(resp.peers) == a.MAX_RESPONSE_PEERS
    odd = encode(
        {
            b"interval": 5,
            b"peers": [
                {b"ip": b"host.example", b"port": 1},
                {b"ip": b"1.2.3.4", b"port": 0},
                5,
                {b"ip": b"1.2.3.4", b"port": 80},
            ],
        }
    )
    assert a.parse_announce_response(odd).peers == [("1.2.3.4", 80)]


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_response_parsers_never_escape_our_errors(raw: bytes) -> None:
    for fn in (a.parse_announce_response, a.parse_scrape_response):
        try:
            fn(raw)
        except SwarmError:
            pass
    for fn2 in (
        lambda d: a.udp_parse_connect(d, 7),
        lambda d: a.udp_parse_announce(d, 7),
        lambda d: a.udp_parse_announce(d, 7, ipv6=True),
        lambda d: a.udp_parse_scrape(d, 7, [IH]),
        a.udp_parse_request,
    ):
        try:
            fn2(raw)
        except SwarmError:
            pass


@settings(max_examples=100)
@given(
    st.dictionaries(st.binary(min_size=20, max_size=20), st.tuples(*[st.integers(0, 10**9)] * 3))
)
def test_scrape_round_trip(files: dict[bytes, tuple[int, int, int]]) -> None:
    stats = {h: a.ScrapeStats(*v) for h, v in files.items()}
    assert a.parse_scrape_response(a.encode_scrape_response(stats)) == stats


def test_udp_connect_and_announce_round_trip() -> None:
    req = a.udp_parse_request(a.udp_connect_request(99))
    assert (req.action, req.tid) == (a.UDP_CONNECT, 99)
    assert a.udp_parse_connect(a.udp_encode_connect(99, 12345), 99) == 12345
    with pytest.raises(ProtocolError, match="transaction"):
        a.udp_parse_connect(a.udp_encode_connect(98, 12345), 99)
    pkt = a.udp_announce_request(12345, 5, IH, PID, 10, 20, 30, "completed", 0xDEAD, -1, 6881)
    assert len(pkt) == 98
    r = a.udp_parse_request(pkt)
    assert r.connection_id == 12345 and r.announce is not None
    ann = r.announce
    assert (ann.info_hash, ann.peer_id, ann.downloaded, ann.left, ann.uploaded) == (
        IH,
        PID,
        10,
        20,
        30,
    )
    assert ann.event == "completed" and ann.numwant == a.DEFAULT_NUMWANT and ann.port == 6881
    resp = a.udp_encode_announce(5, 900, 3, 4, [PEERS[0][1], PEERS[2][1]])
    parsed = a.udp_parse_announce(resp, 5)
    assert parsed.interval == 900 and (parsed.complete, parsed.incomplete) == (4, 3)
    assert parsed.peers == [("10.0.0.1", 6881), ("127.0.0.1", 1)]
    v6 = a.udp_parse_announce(a.udp_encode_announce(5, 1, 0, 0, [PEERS[1][1]]), 5, ipv6=True)
    assert v6.peers == [("::1", 51413)]


def test_udp_scrape_and_error() -> None:
    pkt = a.udp_scrape_request(1, 2, [IH, b"\x01" * 20])
    assert a.udp_parse_request(pkt).info_hashes == (IH, b"\x01" * 20)
    resp = a.udp_encode_scrape(2, [a.ScrapeStats(1, 2, 3), a.ScrapeStats(4, 5, 6)])
    out = a.udp_parse_scrape(resp, 2, [IH, b"\x01" * 20])
    assert out[IH] == a.ScrapeStats(1, 2, 3)
    with pytest.raises(a.TrackerFailure, match="nope"):
        a.udp_parse_announce(a.udp_encode_error(2, "nope"), 2)
    with pytest.raises(ProtocolError, match="short"):
        a.udp_parse_scrape(resp[:-1], 2, [IH, b"\x01" * 20])
    with pytest.raises(ValueError):
        a.udp_scrape_request(1, 2, [IH] * 75)
    with pytest.raises(a.BadAnnounce):
        a.udp_parse_request(a.udp_connect_request(1)[:-1] + b"\x00" * 0 + b"\x01" * 0 + b"")
    with pytest.raises(a.BadAnnounce, match="protocol"):
        a.udp_parse_request(b"\x00" * 8 + b"\x00" * 8)


def test_udp_timeout_and_backoff() -> None:
    assert [a.udp_timeout(n) for n in range(3)] == [15.0, 30.0, 60.0]
    assert a.udp_timeout(100) == 15.0 * 256
    assert a.udp_timeout(1, base=0.1) == pytest.approx(0.2)
    assert a.retry_delay(1) == 15.0 and a.retry_delay(2) == 30.0 and a.retry_delay(50) == 1800.0
    resp = a.AnnounceResponse(interval=5, min_interval=20)
    assert a.next_interval(resp, floor=1.0) == 20.0
    assert a.next_interval(a.AnnounceResponse(interval=1), floor=30.0) == 30.0


def test_tiers_shuffle_and_promote() -> None:
    tiers = a.Tiers([["a", "b", "c"], ["d"], [], ["a", "e"]], random.Random(1))
    assert [sorted(t) for t in tiers.tiers] == [["a", "b", "c"], ["d"], ["e"]]
    last = tiers.tiers[0][-1]
    tiers.promote(0, last)
    assert tiers.tiers[0][0] == last
    assert [u for _, u in tiers.order()][-2:] == ["d", "e"]
    seen = {tuple(a.Tiers([["a", "b", "c", "d"]], random.Random(s)).tiers[0]) for s in range(20)}
    assert len(seen) > 1


def test_pack_peer() -> None:
    assert a.pack_peer("::ffff:1.2.3.4", 80) == bytes([1, 2, 3, 4, 0, 80])
    with pytest.raises(ValueError):
        a.pack_peer("1.2.3.4", 0)
    with pytest.raises(ProtocolError):
        a.unpack_peer(b"12345")


@settings(max_examples=500)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(["%", "%2", "%zz", "+", "a", "%%", "%25", "%41", "%fF", "Z"]),
            st.binary(min_size=1, max_size=1).map(lambda b: "%" + b.hex()),
        ),
        max_size=30,
    )
)
def test_fast_unquote_matches_urllib(parts: list[str]) -> None:
    from urllib.parse import unquote_to_bytes

    value = "".join(parts)
    assert a.unquote(value) == unquote_to_bytes(value)


_NAMES = ["info_hash", "peer_id", "port", "uploaded", "downloaded", "left", "event", "numwant",
          "compact", "no_peer_id", "key", "ip", "x"]  # fmt: skip
_FRAGMENTS = st.one_of(
    st.binary(min_size=1, max_size=1).map(lambda b: "%" + b.hex().upper()),
    st.sampled_from(["0", "1", "9", "-", "%", "%2", "+", "=", "started", "::1", "a"]),
)


@settings(max_examples=600)
@given(
    st.dictionaries(
        st.sampled_from(_NAMES),
        st.one_of(st.none(), st.lists(_FRAGMENTS, max_size=25).map("".join)),
        max_size=4,
    )
)
def test_mutated_queries_never_escape_our_errors(changes: dict[str, str | None]) -> None:
    """A valid announce with a few parameters replaced by junk or removed."""
    params: dict[str, str] = {"info_hash": "%01" * 20, "peer_id": "x" * 20, "port": "6881"}
    for k, v in changes.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    query = "&".join(f"{k}={v}" for k, v in params.items())
    try:
        req = a.parse_announce_query(query)
    except a.BadAnnounce:
        return
    assert len(req.info_hash) == 20 and 0 < req.port < 65536 and 0 <= req.numwant <= 200
