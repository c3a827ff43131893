"""Model-based property tests: random add/remove/pick/block/reject/hash sequences."""

import random

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from swarm.core.bitfield import Bitfield
from swarm.core.picker import ENDGAME_QUEUE, ENDGAME_REQUESTERS, Block, PiecePicker

BS = 4  # tiny blocks keep the state space small
PEERS = ["a", "b", "c", "d"]


class PickerMachine(RuleBasedStateMachine):
    @initialize(
        n=st.integers(1, 6),
        blocks=st.integers(1, 3),
        short=st.integers(0, 2 * BS - 1),
        have=st.lists(st.booleans(), min_size=6, max_size=6),
        seed=st.integers(0, 1000),
        sequential=st.booleans(),
    )
    def setup(
        self, n: int, blocks: int, short: int, have: list[bool], seed: int, sequential: bool
    ) -> None:
        plen = blocks * BS
        total = n * plen - min(short, plen - 1)
        hv = Bitfield(n)
        for i in range(n):
            if have[i]:
                hv.set(i)
        self.n = n
        self.p = PiecePicker(n, plen, total, block_size=BS, have=hv, rng=random.Random(seed))
        if sequential:
            self.p.set_sequential(True, 2 * plen)
        self.have = {i for i in range(n) if have[i]}
        self.bf: dict[str, Bitfield | None] = {}
        self.out: dict[str, set[Block]] = {k: set() for k in PEERS}
        self.received: set[tuple[int, int]] = set()
        self.contrib: dict[int, set[str]] = {}
        self.prio = [1] * n

    def blocks_of(self, i: int) -> list[Block]:
        return [
            Block(i, b * BS, min(BS, self.p.piece_size(i) - b * BS))
            for b in range(self.p.blocks_in(i))
        ]

    def piece_done(self, i: int) -> bool:
        return all((b.index, b.begin) in self.received for b in self.blocks_of(i))

    @rule(
        k=st.sampled_from(PEERS),
        seed_peer=st.booleans(),
        bits=st.lists(st.booleans(), min_size=6, max_size=6),
    )
    def add_peer(self, k: str, seed_peer: bool, bits: list[bool]) -> None:
        if seed_peer:
            self.p.add_peer_have_all(k)
            self.bf[k] = None
        else:
            b = Bitfield(self.n)
            for i in range(self.n):
                if bits[i]:
                    b.set(i)
            self.p.add_peer(k, b)
            self.bf[k] = b if not b.all() else None

    @rule(k=st.sampled_from(PEERS), i=st.integers(0, 5))
    def have_msg(self, k: str, i: int) -> None:
        if k in self.bf and i < self.n and self.bf[k] is not None:
            self.p.peer_have(k, i)
            self.bf[k].set(i)  # type: ignore[union-attr]

    @rule(k=st.sampled_from(PEERS))
    def remove(self, k: str) -> None:
        self.p.remove_peer(k)
        self.bf.pop(k, None)
        self.out[k].clear()

    @rule(k=st.sampled_from(PEERS), count=st.integers(1, 8))
    def pick(self, k: str, count: int) -> None:
        if k in self.bf:
            self._pick(k, self.bf[k], count)

    @rule(
        k=st.sampled_from(PEERS),
        count=st.integers(1, 8),
        bits=st.lists(st.booleans(), min_size=6, max_size=6),
    )
    def pick_restricted(self, k: str, count: int, bits: list[bool]) -> None:
        """The engine may narrow a peer's pieces (allowed-fast while choked, memory cap)."""
        if k not in self.bf:
            return
        full = self.bf[k]
        sub = Bitfield(self.n)
        for i in range(self.n):
            if bits[i] and (full is None or full[i]):
                sub.set(i)
        self._pick(k, sub, count)

    def _pick(self, k: str, has: Bitfield | None, count: int) -> None:
        got = self.p.pick(k, has, count)
        assert len(got) <= count
        assert len(set(got)) == len(got)
        for blk in got:
            assert blk in self.blocks_of(blk.index)
            assert blk.index not in self.have
            assert self.prio[blk.index] > 0
            assert has is None or has[blk.index]
            assert (blk.index, blk.begin) not in self.received
            assert blk not in self.out[k]
            others = [o for o in PEERS if blk in self.out[o]]
            if others:
                assert self.p.endgame, "duplicate request outside endgame"
                assert len(others) < ENDGAME_REQUESTERS
            self.out[k].add(blk)
        if len(got) < count:
            self.check_nothing_left_for(k, has)

    def check_nothing_left_for(self, k: str, has: Bitfield | None) -> None:
        """A short pick means no block was available to this peer."""
        endgame = self.p.endgame
        for i in range(self.n):
            if i in self.have or (has is not None and not has[i]) or not self.prio[i]:
                continue
            for blk in self.blocks_of(i):
                if (i, blk.begin) in self.received or blk in self.out[k]:
                    continue
                requesters = sum(blk in self.out[o] for o in PEERS)
                assert requesters > 0, f"free block {blk} not handed out"
                if endgame and len(self.out[k]) < ENDGAME_QUEUE:
                    assert requesters >= ENDGAME_REQUESTERS, f"endgame block {blk} withheld"

    def outstanding(self) -> list[tuple[str, Block]]:
        return sorted((k, b) for k in PEERS for b in self.out[k])

    @precondition(lambda self: any(self.out.values()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        k, blk = data.draw(st.sampled_from(self.outstanding()))
        self._deliver(k, blk)

    @rule(k=st.sampled_from(PEERS), i=st.integers(0, 5), b=st.integers(0, 2))
    def deliver_unrequested(self, k: str, i: int, b: int) -> None:
        if i >= self.n or b >= self.p.blocks_in(i):
            return
        self._deliver(k, self.blocks_of(i)[b])

    def _deliver(self, k: str, blk: Block) -> None:
        key = (blk.index, blk.begin)
        i = blk.index
        started = any(r[0] == i for r in self.received) or any(
            b.index == i for o in PEERS for b in self.out[o]
        )
        useful = i not in self.have and key not in self.received and (self.prio[i] > 0 or started)
        expect_cancels = (
            sorted((o, blk) for o in PEERS if o != k and blk in self.out[o]) if useful else []
        )
        done, cancels = self.p.on_block(k, blk.index, blk.begin)
        assert sorted(cancels) == expect_cancels
        for o in PEERS:
            if useful or o == k:
                self.out[o].discard(blk)
        if useful:
            self.received.add(key)
            self.contrib.setdefault(blk.index, set()).add(k)
            assert done == self.piece_done(blk.index)
        else:
            assert not done

    @precondition(lambda self: any(self.out.values()))
    @rule(data=st.data())
    def reject(self, data: st.DataObject) -> None:
        k, blk = data.draw(st.sampled_from(self.outstanding()))
        self.p.on_reject(k, blk)
        self.out[k].discard(blk)

    @rule(i=st.integers(0, 5), ok=st.booleans())
    def hash_result(self, i: int, ok: bool) -> None:
        if i >= self.n or i in self.have or not self.piece_done(i):
            return
        if ok:
            cancels = self.p.piece_passed(i)
            assert sorted(cancels) == sorted(
                (o, b) for o in PEERS for b in self.out[o] if b.index == i
            )
            for o in PEERS:
                self.out[o] = {b for b in self.out[o] if b.index != i}
            self.have.add(i)
        else:
            assert self.p.piece_failed(i) == self.contrib.get(i, set())
            for o in PEERS:
                self.out[o] = {b for b in self.out[o] if b.index != i}
        self.received = {r for r in self.received if r[0] != i}
        self.contrib.pop(i, None)

    @rule(i=st.integers(0, 5), prio=st.sampled_from([0, 1, 1, 2, 7]))
    def set_priority(self, i: int, prio: int) -> None:
        if i < self.n:
            self.p.set_priority(i, prio)
            self.prio[i] = prio

    @invariant()
    def bookkeeping(self) -> None:
        if not hasattr(self, "p"):
            return
        for k in PEERS:
            assert set(self.p.requests_of(k)) == self.out[k]
        assert self.p.in_flight == sum(len(v) for v in self.out.values())
        wanted = {i for i in range(self.n) if self.prio[i] > 0}
        assert self.p.is_complete() == (wanted <= self.have)
        for k, has in self.bf.items():
            could = any(i not in self.have and (has is None or has[i]) for i in wanted)
            assert self.p.is_interesting(k) == could

    def teardown(self) -> None:
        """Every other peer times out; one seed must then finish the download."""
        if not hasattr(self, "p"):
            return
        p = self.p
        for k in PEERS:
            p.cancel_requests(k)
        p.add_peer_have_all("seed")
        for _ in range(10 * self.n * 3 + 10):
            if p.is_complete():
                break
            blocks = p.pick("seed", None, 5)
            for blk in blocks:
                done, _ = p.on_block("seed", blk.index, blk.begin)
                if done:
                    p.piece_passed(blk.index)
            for i in range(self.n):  # pieces completed earlier but never hashed
                if i not in p.have and p.partial_pieces().get(i, (0, 0, -1))[0] == p.blocks_in(i):
                    p.piece_passed(i)
        assert p.is_complete()
        assert p.in_flight == 0


TestPicker = PickerMachine.TestCase
TestPicker.settings = settings(
    max_examples=300,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
