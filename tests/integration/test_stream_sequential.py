"""Sequential mode: the verified prefix grows in file order; --first-last fetches the ends early."""

from __future__ import annotations

from pathlib import Path

from stream_peers import ScriptedSeed, make_torrent

from swarm import Session

PL = 16384
PIECES = 96
WINDOW = 32 * PL


def out_of_order(order: list[int], window_pieces: int) -> list[int]:
    """Pieces verified further than ``window_pieces`` past the verified prefix at that moment."""
    done: set[int] = set()
    prefix = 0
    bad = []
    for i in order:
        if i >= prefix + window_pieces:
            bad.append(i)
        done.add(i)
        while prefix in done:
            prefix += 1
    return bad


async def fetch_order(tmp_path: Path, *, sequential: bool) -> tuple[list[int], bytes, bytes]:
    payload, _tfile, meta = make_torrent(tmp_path, PIECES * PL - 1000, PL)
    out = tmp_path / ("seq" if sequential else "rarest")
    out.mkdir()
    order: list[int] = []
    # reqq 8: few requests in flight, so the order we ask in is the order data comes;
    # 1 MiB/s: a network slower than hashing, as when streaming (the window counts
    # from the first piece not yet verified)
    async with (
        ScriptedSeed(meta, payload, reqq=8, rate=1 << 20) as seed,
        Session("127.0.0.1", 0) as s,
    ):
        h = await s.add_torrent(meta, out)
        h._t.piece_verified.append(order.append)
        if sequential:
            h.set_sequential(True, WINDOW)
        h.add_peer("127.0.0.1", seed.port)
        await h.wait_complete(timeout=20)
    return order, (out / "f.bin").read_bytes(), payload


async def test_sequential_prefix_grows_in_order(tmp_path: Path) -> None:
    order, got, payload = await fetch_order(tmp_path, sequential=True)
    assert got == payload
    assert sorted(order) == list(range(PIECES))
    assert out_of_order(order, WINDOW // PL) == []
    # and the first pieces came first
    assert sorted(order[:8]) == list(range(8))


async def test_rarest_first_is_not_in_order(tmp_path: Path) -> None:
    """The same check fails without --sequential: the test above can fail."""
    order, got, payload = await fetch_order(tmp_path, sequential=False)
    assert got == payload
    assert out_of_order(order, WINDOW // PL) != []


async def test_first_last_pieces_come_early(tmp_path: Path) -> None:
    payload, _tfile, meta = make_torrent(tmp_path, PIECES * PL, PL)
    out = tmp_path / "out"
    out.mkdir()
    order: list[int] = []
    async with (
        ScriptedSeed(meta, payload, reqq=4, rate=1 << 20) as seed,
        Session("127.0.0.1", 0) as s,
    ):
        h = await s.add_torrent(meta, out)
        h._t.piece_verified.append(order.append)
        h.set_sequential(True, WINDOW)
        h.raise_priority({0, PIECES - 1}, 6)
        h.add_peer("127.0.0.1", seed.port)
        await h.wait_complete(timeout=20)
    assert (out / "f.bin").read_bytes() == payload
    assert PIECES - 1 in order[:6], order[:10]
