"""piece_map(): same map as the plain definition, at a cost set by the map's width (issue 16 #11)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from swarm.core.bitfield import Bitfield
from swarm.core.picker import PiecePicker


def reference_map(picker: PiecePicker, cells: int) -> str:
    """The definition: per cell the least advanced wanted piece ('.' < '+' < '#'), ' ' if none."""
    n = picker.num_pieces
    if n == 0 or cells <= 0:
        return ""
    cells = min(cells, n)
    partial = picker.partial_pieces()
    out = []
    for c in range(cells):
        lo, hi = c * n // cells, (c + 1) * n // cells
        rng = range(lo, hi)
        wanted_missing = [i for i in rng if picker.priority(i) > 0 and not picker.have[i]]
        if any(i not in partial for i in wanted_missing):
            out.append(".")
        elif wanted_missing:
            out.append("+")
        elif any(picker.have[i] for i in rng):
            out.append("#")
        else:
            out.append(" ")
    return "".join(out)


class _Counting(list[int]):
    reads = 0

    def __getitem__(self, i):  # type: ignore[no-untyped-def,override]
        _Counting.reads += 1
        return super().__getitem__(i)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 70),
    cells=st.integers(0, 80),
    ops=st.lists(st.tuples(st.sampled_from(["prio", "pass", "lost", "pick"]), st.integers(0, 69), st.integers(0, 3))),
)
def test_piece_map_matches_the_definition(n: int, cells: int, ops: list[tuple[str, int, int]]) -> None:
    picker = PiecePicker(n, 32 * 1024, n * 32 * 1024 - 100)
    peer = object()
    picker.add_peer(peer, Bitfield(n, full=True))  # type: ignore[arg-type]
    for op, i, prio in ops:
        i %= n
        if op == "prio":
            picker.set_priority(i, prio)
        elif op == "pass":
            picker.piece_passed(i)
        elif op == "lost":
            picker.piece_lost(i)
        else:
            picker.pick(peer, None, 1 + prio)  # type: ignore[arg-type]
        assert picker.piece_map(cells) == reference_map(picker, cells)


def test_piece_map_cost_follows_the_width_not_the_unwanted_pieces() -> None:
    """A 500k-piece torrent with one small file wanted (``--files``): the map must not
    look at each of the ~500k unwanted missing pieces (121 ms per call before)."""
    n = 500_000
    picker = PiecePicker(n, 16 * 1024, n * 16 * 1024)
    prios = [0] * n
    for i in range(1000, 1010):
        prios[i] = 1
    picker.set_priorities(prios)
    counting = _Counting(picker._prio)
    picker._prio = counting
    _Counting.reads = 0
    out = picker.piece_map(1000)
    assert out[2] == "." and out.count(".") == 1 and out.count(" ") == 999
    # per cell a constant number of Python-level steps (plus one per piece in progress)
    assert _Counting.reads <= 1000
