"""MemoryStore against a plain model, over random announce sequences (hypothesis)."""

from __future__ import annotations

import asyncio
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.announce import AnnounceRequest, pack_peer
from tracker.store import MemoryStore

TTL = 50.0

ops = st.lists(
    st.tuples(
        st.integers(0, 7),  # which peer
        st.sampled_from([0, 5]),  # left
        st.sampled_from(["", "", "started", "stopped", "completed"]),
        st.integers(0, 30),  # seconds since the previous op
        st.integers(0, 6),  # numwant
        st.integers(0, 1),  # swarm
        st.booleans(),  # compact
        st.sampled_from(["10.0.0.1", "10.0.0.1", "10.0.0.2"]),  # the sender's address
    ),
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(ops, st.integers(0, 2**32))
def test_memory_store_matches_model(sequence: list[Op], seed: int) -> None:
    asyncio.run(_check(sequence, seed))


def _pid(n: int) -> bytes:
    return b"-PR0000-" + n.to_bytes(12, "big")


def _addr(n: int, ip: str = "10.0.0.1") -> bytes:
    return pack_peer(ip, 1000 + n)


Op = tuple[int, int, str, int, int, int, bool, str]


async def _check(sequence: list[Op], seed: int) -> None:
    store = MemoryStore(peer_ttl=TTL, rng=random.Random(seed))
    # (swarm, pid) -> (seed, expires, the IP that made it); swept entries leave it
    model: dict[tuple[int, bytes], tuple[bool, float, str]] = {}
    completed = {0: 0, 1: 0}
    now = 0.0
    for n, left, event, dt, want, swarm, compact, ip in sequence:
        now += dt
        swept = dt > 25  # sometimes a sweep runs first
        if swept:
            await store.expire(now)
            model = {k: v for k, v in model.items() if v[1] > now}
            for sw in (0, 1):  # a swarm with nobody left is forgotten, counts and all
                if not any(v[1] > now for k, v in model.items() if k[0] == sw):
                    completed[sw] = 0
        pid = _pid(n)
        ih = bytes([swarm]) * 20
        req = AnnounceRequest(
            ih, pid, 1000 + n, left=left, event=event, numwant=want, compact=compact
        )
        r = await store.announce(req, _addr(n, ip), now)
        live = {k: v for k, v in model.items() if v[1] > now and k[0] == swarm}
        mine = (swarm, pid) not in model or model[(swarm, pid)][2] == ip  # else: hands off
        if event == "stopped":
            if mine:
                model.pop((swarm, pid), None)
            assert r.peers == []
            continue
        if mine:
            model[(swarm, pid)] = live[(swarm, pid)] = (left == 0, now + TTL, ip)
            if event == "completed":
                completed[swarm] += 1
        got = [p for p, _ in r.peers]
        assert [
            _addr(k := int.from_bytes(p[8:], "big"), model[(swarm, _pid(k))][2]) for p in got
        ] == [a for _, a in r.peers]
        assert pid not in got, "the asker got itself"
        assert len(got) == len(set(got)) <= want
        for p in got:
            assert (swarm, p) in live, "an expired or stopped peer was handed out"
        if left == 0:
            assert not any(live[(swarm, p)][0] for p in got), "a seed was given a seed"
        others = [k for k, v in live.items() if k[1] != pid and not (left == 0 and v[0])]
        # peers past their time but not yet swept are skipped, so only a fresh sweep
        # guarantees a full answer
        assert len(got) <= min(want, len(others))
        if swept:
            assert len(got) == min(want, len(others))
        assert store.peer_count == sum(len(sw) for sw in store.swarms.values())
        sc = (await store.scrape([ih]))[ih]
        assert sc.downloaded == completed[swarm]
    # after a sweep at the end, the store holds exactly the live peers
    await store.expire(now)
    stats = await store.stats()
    assert stats["peers"] == sum(1 for v in model.values() if v[1] > now) == store.peer_count
