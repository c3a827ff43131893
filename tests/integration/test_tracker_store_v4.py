"""``MemoryStore.announce_v4`` (UDP's one-step IPv4 case) against ``announce_fields``
(the general path): two stores with the same random generator, the same announces;
where the one-step path answers, the answer, the counts and the state afterwards are
those of the general path, and where it declines it has changed nothing."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.announce import pack_peer
from tracker.store import MemoryStore, _Pool


def _sequence(rng: random.Random, n: int, ipv6: bool) -> list[Op]:
    """Long random runs (hypothesis's own lists stay too short to fill a swarm): a
    few peers or many, small and large numwant, events, clock steps, three IPv4
    sources and sometimes an IPv6 one."""
    peers = rng.choice([6, 30, 120])
    ips = ["10.0.0.1"] * 8 + ["10.0.0.2", "10.0.0.3"] + (["2001:db8::1"] if ipv6 else [])
    return [
        (
            rng.randrange(peers),
            rng.choice([0, 0, 5]),
            rng.choice(["", "", "", "", "", "started", "stopped", "completed"]),
            rng.choice([0, 0, 1, 3, 45]),
            rng.choice([0, 1, 2, 3, 4, 5, 6, 50, 200]),
            rng.randrange(2),
            rng.choice(ips),
        )
        for _ in range(n)
    ]


Op = tuple[int, int, str, int, int, int, str]


def _pid(n: int) -> bytes:
    return (b"A2-1-36-0-" if n % 17 == 0 else b"-PR0000-").ljust(8, b"-") + n.to_bytes(12, "big")


def _state(store: MemoryStore) -> object:
    def pool(p: _Pool) -> object:
        return (list(p.ids), list(p.addrs), list(p.expires), dict(p.index), bytes(p.packed),
                p.ipv6, p.earliest)  # fmt: skip

    swarms = {h: (pool(s.seeds), pool(s.leechers), s.completed, s.creator)
              for h, s in store.swarms.items()}  # fmt: skip
    return (swarms, store.peer_count, dict(store.peers_by_source),
            dict(store.swarms_by_source), store.total_completed)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from([5, 60, 20_000]), st.booleans())
def test_one_step_path_answers_as_the_general_path(seed: int, per_swarm: int, ipv6: bool) -> None:
    sequence = _sequence(random.Random(seed), 400, ipv6)
    caps = {"peer_ttl": 100.0, "max_peers_per_swarm": per_swarm, "max_peers_per_source": 70}
    fast = MemoryStore(rng=random.Random(seed), **caps)  # type: ignore[arg-type]
    slow = MemoryStore(rng=random.Random(seed), **caps)  # type: ignore[arg-type]
    now, taken = 1000.0, 0
    for n, left, event, dt, want, swarm, ip in sequence:
        now += dt
        if dt > 30:  # sometimes a sweep runs first
            assert asyncio.run(fast.expire(now)) == asyncio.run(slow.expire(now))
        h = bytes([swarm]) * 20
        addr = pack_peer(ip, 1000 + n)
        args = (h, _pid(n), left, event, want, addr, now)
        before = _state(fast)
        got = fast.announce_v4(*args) if len(addr) == 6 else None
        expected = None
        try:
            packed = bytearray()
            _, addrs, seeders, leechers = slow.announce_fields(*args, False, packed)
            expected = (bytes(packed) or b"".join(addrs), seeders, leechers)
        except Exception as exc:  # a full store: the one-step path must have declined
            assert got is None, exc
        if got is None:
            assert _state(fast) == before  # declined before changing anything
            try:
                fast.announce_fields(*args, False, bytearray())
            except Exception:
                pass
        else:
            taken += 1
            assert (bytes(got[0]), got[1], got[2]) == expected
        assert _state(fast) == _state(slow)
    assert taken > 0
