"""Tokens, the peer store and the loopback-only address policy."""

from __future__ import annotations

import itertools
from collections.abc import Callable

from swarm.core.dht.peer_store import PeerStore
from swarm.core.dht.policy import PUBLIC_BOOTSTRAP, address_allowed, default_bootstrap, is_loopback
from swarm.core.dht.tokens import ROTATE_EVERY, TokenManager


def _counter_bytes() -> Callable[[int], bytes]:
    c = itertools.count()
    return lambda n: next(c).to_bytes(n, "big")


def test_token_valid_across_one_rotation_not_two() -> None:
    tm = TokenManager(0.0, _counter_bytes())
    tok = tm.token_for("10.0.0.1", 1.0)
    assert tm.check(tok, "10.0.0.1", 1.0)
    assert tm.check(tok, "10.0.0.1", ROTATE_EVERY + 1)  # previous secret
    assert tm.token_for("10.0.0.1", ROTATE_EVERY + 2) != tok
    assert not tm.check(tok, "10.0.0.1", 2 * ROTATE_EVERY + 1)  # two rotations


def test_token_invalid_after_long_silence() -> None:
    tm = TokenManager(0.0, _counter_bytes())
    tok = tm.token_for("10.0.0.1", 0.0)
    # No call for 10+ minutes: both secrets must be new, not "current becomes previous".
    assert not tm.check(tok, "10.0.0.1", 3 * ROTATE_EVERY)


def test_token_bound_to_ip() -> None:
    tm = TokenManager(0.0)
    tok = tm.token_for("127.0.0.1", 0.0)
    assert not tm.check(tok, "127.0.0.2", 0.0)
    assert not tm.check(tok, "::1", 0.0)
    assert not tm.check(b"", "127.0.0.1", 0.0)
    assert not tm.check(b"x" * 64, "127.0.0.1", 0.0)
    assert len(tok) == 8


def test_peer_store_bounds_and_expiry() -> None:
    ps = PeerStore(max_per_hash=100, max_hashes=50, ttl=1800.0, max_reply=50)
    ih = b"i" * 20
    for port in range(1, 301):
        ps.add(ih, ("127.0.0.1", port), float(port))
    assert ps.peer_count() == 100
    got = ps.get(ih, 300.0)
    assert len(got) == 50 and got[0] == ("127.0.0.1", 300)  # most recent first
    for i in range(200):
        ps.add(i.to_bytes(20, "big"), ("127.0.0.1", 1), 300.0)
    assert len(ps) == 50
    assert ps.get(ih, 300.0) == []  # least recently announced hash evicted
    # Re-announcing refreshes; expiry drops the stale ones.
    ps.add(ih, ("127.0.0.1", 9), 1000.0)
    ps.expire(2101.0)  # the 200 hashes announced at t=300 are 1801 s old
    assert ps.get(ih, 2101.0) == [("127.0.0.1", 9)]
    assert len(ps) == 1
    ps.expire(2800.0)
    assert len(ps) == 0 and ps.get(ih, 2800.0) == []


def test_loopback_policy() -> None:
    assert default_bootstrap("127.0.0.1") == ()
    assert default_bootstrap("::1") == ()
    assert default_bootstrap("0.0.0.0") == PUBLIC_BOOTSTRAP
    assert is_loopback("127.3.4.5") and is_loopback("localhost") and not is_loopback("10.0.0.1")
    assert address_allowed("127.0.0.1", 6881, loopback_only=True)
    assert address_allowed("::1", 6881, loopback_only=True)
    for host in ("10.0.0.1", "8.8.8.8", "67.215.246.10", "::ffff:8.8.8.8", "router.bittorrent.com"):
        assert not address_allowed(host, 6881, loopback_only=True)
    assert address_allowed("8.8.8.8", 6881, loopback_only=False)
    assert not address_allowed("127.0.0.1", 0, loopback_only=True)
    assert not address_allowed("0.0.0.0", 1, loopback_only=False)


def test_rate_limiter() -> None:
    from swarm.core.dht.ratelimit import RateLimiter

    rl = RateLimiter(rate=10.0, burst=5.0, max_keys=3)
    assert [rl.allow("a", 0.0) for _ in range(6)] == [True] * 5 + [False]
    assert rl.allow("b", 0.0)  # other sources unaffected
    assert not rl.allow("a", 0.05)
    assert rl.allow("a", 0.1)  # refilled one token
    for key in ("c", "d", "e"):
        rl.allow(key, 1.0)
    assert len(rl) == 3


def test_parse_hostport() -> None:
    import pytest

    from swarm.core.dht.policy import parse_hostport
    from swarm.errors import BadInput

    assert parse_hostport("127.0.0.1:6881") == ("127.0.0.1", 6881)
    assert parse_hostport("router.bittorrent.com:6881") == ("router.bittorrent.com", 6881)
    assert parse_hostport("[::1]:7000") == ("::1", 7000)
    assert parse_hostport("::1") == ("::1", 6881)
    assert parse_hostport("localhost") == ("localhost", 6881)
    for bad in ("", ":6881", "h:0", "h:70000", "h:x", "[::1", "[::1]x", "h:-1"):
        with pytest.raises(BadInput):
            parse_hostport(bad)
