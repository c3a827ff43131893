from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from swarm.core.lsd import (
    MAX_DATAGRAM,
    SEND_LIMIT,
    LSDAnnounce,
    RateLimiter,
    build_announces,
    lsd_allowed,
    parse_announce,
)
from swarm.errors import ProtocolError

IH1 = bytes(range(20))
IH2 = b"\xaa" * 20


def test_build_matches_bep14() -> None:
    [msg] = build_announces(6881, [IH1], "c00k1e")
    assert msg == (
        b"BT-SEARCH * HTTP/1.1\r\n"
        b"Host: 239.192.152.143:6771\r\n"
        b"Port: 6881\r\n"
        b"Infohash: 000102030405060708090a0b0c0d0e0f10111213\r\n"
        b"cookie: c00k1e\r\n"
        b"\r\n\r\n"
    )


def test_round_trip_several_hashes() -> None:
    [msg] = build_announces(51413, [IH1, IH2], "x")
    assert parse_announce(msg) == LSDAnnounce(51413, (IH1, IH2), "x", "239.192.152.143:6771")
    [msg6] = build_announces(1, [IH1], ipv6=True)
    assert parse_announce(msg6).host == "[ff15::efc0:988f]:6771"


def test_many_hashes_split_under_the_mtu() -> None:
    hashes = [i.to_bytes(20, "big") for i in range(200)]
    msgs = build_announces(6881, hashes, "abc")
    assert len(msgs) > 1 and all(len(m) <= SEND_LIMIT for m in msgs)
    got = [ih for m in msgs for ih in parse_announce(m).info_hashes]
    assert got == hashes


def test_libtorrent_style_uppercase_and_single_crlf_end() -> None:
    raw = (
        b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
        b"Infohash: " + IH2.hex().upper().encode() + b"\r\ncookie: 1a2b\r\n\r\n"
    )
    assert parse_announce(raw) == LSDAnnounce(6881, (IH2,), "1a2b", "239.192.152.143:6771")


def test_unknown_headers_ignored_and_header_names_case_insensitive() -> None:
    raw = b"BT-SEARCH * HTTP/1.1\r\nPORT: 7\r\nX-Foo: bar\r\ninfohash: " + IH1.hex().encode()
    assert parse_announce(raw + b"\r\n\r\n\r\n").port == 7


GOOD = b"BT-SEARCH * HTTP/1.1\r\nPort: 6881\r\nInfohash: " + IH1.hex().encode() + b"\r\n"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"M-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n",
        GOOD,  # unterminated
        GOOD + b"\r\nextra",
        b"BT-SEARCH * HTTP/1.1\r\nInfohash: " + IH1.hex().encode() + b"\r\n\r\n",
        b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\n\r\n",
        GOOD.replace(b"6881", b"0") + b"\r\n",
        GOOD.replace(b"6881", b"65536") + b"\r\n",
        GOOD.replace(b"6881", b"-1") + b"\r\n",
        GOOD.replace(b"6881", b"00000006881") + b"\r\n",
        GOOD + b"Port: 2\r\n\r\n",
        GOOD.replace(IH1.hex().encode(), b"zz" * 20) + b"\r\n",
        GOOD.replace(IH1.hex().encode(), b"ab" * 19) + b"\r\n",
        GOOD + b"cookie: \xff\r\n\r\n",
        GOOD + b"no colon here\r\n\r\n",
        GOOD + b" Port: 1\r\n\r\n",
        GOOD + b"X: " + b"y" * MAX_DATAGRAM + b"\r\n\r\n",
        GOOD + b"".join(b"Infohash: %040x\r\n" % i for i in range(1, 70)) + b"\r\n",
    ],
)
def test_parse_rejects(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse_announce(raw)


@given(st.binary(max_size=600))
def test_random_bytes_only_protocol_error(raw: bytes) -> None:
    try:
        parse_announce(raw)
    except ProtocolError:
        pass


@given(st.binary(max_size=200))
def test_random_headers_only_protocol_error(tail: bytes) -> None:
    try:
        parse_announce(GOOD + tail)
    except ProtocolError:
        pass


def test_build_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        build_announces(0, [IH1])
    with pytest.raises(ValueError):
        build_announces(1, [b"short"])
    with pytest.raises(ValueError):
        build_announces(1, [IH1], "bad cookie\r\nPort: 2")
    assert build_announces(1, []) == []


def test_rate_limiter() -> None:
    rl = RateLimiter(60.0, max_keys=3)
    assert rl.take([IH1, IH2, IH1], 0.0) == [IH1, IH2]
    assert rl.take([IH1, IH2], 59.0) == []
    assert rl.take([IH1], 60.0) == [IH1]
    assert rl.take([IH2], 61.0) == [IH2]
    for k in (b"a", b"b", b"c"):
        assert rl.allow(k, 70.0)
    assert rl.allow(IH1, 71.0)  # forgotten: bounded memory wins over strictness


def test_lsd_allowed() -> None:
    assert not lsd_allowed("127.0.0.1")
    assert not lsd_allowed("127.1.2.3")
    assert not lsd_allowed("::1")
    assert not lsd_allowed("localhost")
    assert lsd_allowed(None) and lsd_allowed("0.0.0.0") and lsd_allowed("10.1.2.3")
