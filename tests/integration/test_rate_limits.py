"""--max-up / --max-down: the observed payload rate stays within 10 % of the limit over any
5 s window of a transfer, and the same transfer unlimited is several times faster."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from swarm import Session
from swarm.core.metainfo import parse_metainfo
from swarm.create import create_torrent

MiB = 1024 * 1024
WINDOW = 5.0
SAMPLE = 0.1


async def _transfer(tmp_path: Path, tag: str, data: bytes, meta_name: str, *, max_up: int = 0,
                    max_down: int = 0, timeout: float) -> tuple[float, list[tuple[float, int]]]:
    """Seed (max_up) -> leecher (max_down); (seconds taken, samples of the leecher's bytes).
    Also checks that the leecher's request pipeline follows the allowed download rate."""
    meta = parse_metainfo(data)
    out = tmp_path / tag
    out.mkdir()
    async with Session("127.0.0.1", 0, max_up=max_up) as seed_s, \
            Session("127.0.0.1", 0, max_down=max_down) as get_s:
        await seed_s.add_torrent(data, tmp_path / "src", seed_only=True)
        h = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        samples: list[tuple[float, int]] = []
        torrent = get_s.torrents[meta.info_hash]
        deepest = 0
        start = time.monotonic()
        done = asyncio.ensure_future(h.wait_complete(timeout=timeout))
        while not done.done():
            samples.append((time.monotonic(), h.downloaded))
            deepest = max([deepest, *(len(p.requests) for p in torrent.peers)])
            await asyncio.wait({done}, timeout=SAMPLE)
        await done
        samples.append((time.monotonic(), h.downloaded))
        took = time.monotonic() - start
    if max_down:
        # about 3 s of the allowed rate in flight, not the slow start's growth up to reqq
        assert deepest <= max_down * 3 // (16 * 1024) + 1, deepest
    assert (out / meta_name).read_bytes() == (tmp_path / "src" / meta_name).read_bytes()
    return took, samples


def _worst_window(samples: list[tuple[float, int]]) -> float:
    """The highest rate over any span of at least WINDOW seconds between two samples (bytes/s)."""
    worst = 0.0
    j = 0
    for t, n in samples:
        # j: the latest sample at least WINDOW seconds before this one
        while j + 1 < len(samples) and samples[j + 1][0] <= t - WINDOW:
            j += 1
        if t - samples[j][0] >= WINDOW:
            worst = max(worst, (n - samples[j][1]) / (t - samples[j][0]))
    return worst


async def _check(tmp_path: Path, direction: str, rate: int, seconds: float) -> None:
    size = int(rate * seconds)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(size))
    data = create_torrent(src / "f.bin", piece_length=256 * 1024)
    limit = {"max_up": rate} if direction == "up" else {"max_down": rate}
    took, samples = await _transfer(tmp_path, "limited", data, "f.bin", timeout=seconds * 3, **limit)
    worst = _worst_window(samples)
    assert worst > 0, "no 5 s window measured"
    assert worst <= rate * 1.10, f"{worst / rate:.3f} x the limit over a 5 s window"
    assert size / took >= rate * 0.8, f"only {size / took / rate:.2f} x the limit on average"
    free, _ = await _transfer(tmp_path, "unlimited", data, "f.bin", timeout=seconds * 3)
    assert free * 4 < took, f"unlimited {free:.1f} s vs limited {took:.1f} s"


@pytest.mark.parametrize("direction", ["down", "up"])
async def test_rate_limit_holds_short(tmp_path: Path, direction: str) -> None:
    await _check(tmp_path, direction, 1 * MiB, 7.0)


async def test_pipeline_follows_a_low_download_limit(tmp_path: Path) -> None:
    await _check(tmp_path, "down", 256 * 1024, 7.0)


@pytest.mark.slow
@pytest.mark.parametrize("direction", ["down", "up"])
async def test_rate_limit_holds_over_30_s(tmp_path: Path, direction: str) -> None:
    await _check(tmp_path, direction, 512 * 1024, 32.0)


async def test_max_down_holds_for_a_web_seed(tmp_path: Path) -> None:
    """Web seeds share the down bucket: read chunk by chunk, paused while it is in debt."""
    from tests.helpers.webseed_server import Origin

    rate = 512 * 1024
    size = int(rate * 6.5)
    src = tmp_path / "src"
    src.mkdir()
    (src / "f.bin").write_bytes(os.urandom(size))
    meta = parse_metainfo(create_torrent(src / "f.bin", piece_length=64 * 1024))
    out = tmp_path / "out"
    out.mkdir()
    async with Origin(src) as origin, Session("127.0.0.1", 0, max_down=rate) as s:
        h = await s.add_torrent(meta, out, web_seeds=[origin.url])
        samples: list[tuple[float, int]] = []
        start = time.monotonic()
        done = asyncio.ensure_future(h.wait_complete(timeout=30))
        while not done.done():
            samples.append((time.monotonic(), h.downloaded))
            await asyncio.wait({done}, timeout=SAMPLE)
        await done
        samples.append((time.monotonic(), h.downloaded))
        took = time.monotonic() - start
    assert (out / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
    assert 0 < _worst_window(samples) <= rate * 1.10
    assert size / took >= rate * 0.8


@pytest.mark.parametrize("side", ["seed --max-up", "get --max-down"])
def test_cli_rate_options_are_wired(tmp_path: Path, side: str) -> None:
    """`swarm seed --max-up 1M` or `swarm get --max-down 1M`: 3 MiB take about 3 s, not a blink."""
    import json
    import subprocess

    from tests.helpers.procs import ENV, LOCAL_NET, start_json_seed, stop_process, swarm_get

    src = tmp_path / "src"
    src.mkdir()
    size = 3 * MiB
    (src / "f.bin").write_bytes(os.urandom(size))
    seed_extra = ("--max-up", "1M") if side.startswith("seed") else ()
    get_extra = ["--max-down", "1M"] if side.startswith("get") else []
    seed, port, torrent = start_json_seed(src / "f.bin", tmp_path, *LOCAL_NET, *seed_extra)
    try:
        r = subprocess.run(
            [*swarm_get(torrent, tmp_path / "out"), "--peer", f"127.0.0.1:{port}", "--json", *get_extra],
            capture_output=True, text=True, timeout=60, env=ENV,
        )
    finally:
        stop_process(seed)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "f.bin").read_bytes() == (src / "f.bin").read_bytes()
    summary = [json.loads(line) for line in r.stdout.splitlines() if '"summary"' in line][-1]
    # the burst and the last read aside, 3 MiB at 1 MiB/s cannot take much under 2.5 s
    assert summary["elapsed"] >= 2.5, summary
