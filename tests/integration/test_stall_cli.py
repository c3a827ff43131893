"""Why is it stuck: `swarm get --json` names the reason in a `stalled` event (and in
progress objects' stalled_reason). The stall threshold is lowered with the hidden
--stall-after option so each scenario takes seconds, not the default 15 s."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import time
from pathlib import Path

from stream_peers import ScriptedSeed, make_torrent

from swarm.core.bitfield import Bitfield
from swarm.ui.events import validate
from tests.helpers.procs import swarm_get

SWARM = [sys.executable, "-m", "swarm"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stalled_reason(
    tfile: Path | str, out: Path, *extra: str, timeout: float = 20, dht: bool = False
) -> str:
    """Run `swarm get --json` until its first `stalled` event; its reason.

    With ``dht`` the DHT runs, bound to 127.0.0.1 with no bootstrap node: it stays empty.
    """
    out.mkdir(exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *SWARM,
        "get",
        str(tfile),
        "-o",
        str(out),
        "--port",
        "0",
        "--host",
        "127.0.0.1",
        *([] if dht else ["--no-dht"]),
        "--no-lsd",
        "--json",
        "--stall-after",
        "2",
        *extra,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=ENV,
    )
    assert proc.stdout is not None and proc.stderr is not None
    seen: list[dict[str, object]] = []
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no stalled event in {timeout}s: {seen[-3:]}"
            line = await asyncio.wait_for(proc.stdout.readline(), left)
            assert line, f"swarm get exited: {(await proc.stderr.read()).decode()[-1500:]}"
            ev = json.loads(line)
            assert validate(ev) == [], ev
            seen.append(ev)
            if ev["event"] == "stalled":
                return str(ev["reason"])
    finally:
        if proc.returncode is None:
            proc.terminate()
        await asyncio.wait_for(proc.communicate(), 15)


async def test_dead_tracker(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/announce"
    _payload, tfile, _meta = make_torrent(tmp_path, 100_000, 16384, trackers=(url,))
    reason = await stalled_reason(tfile, tmp_path / "out", dht=True)
    assert reason.startswith("the only tracker is failing"), reason
    assert url in reason and reason.endswith("; no DHT nodes; no peers known")


async def test_unreachable_peer(tmp_path: Path) -> None:
    _payload, tfile, _meta = make_torrent(tmp_path, 100_000, 16384)
    port = closed_port()
    reason = await stalled_reason(tfile, tmp_path / "out", "--peer", f"127.0.0.1:{port}")
    assert reason.startswith("1 peer known but none reachable"), reason
    assert "refused" in reason


async def test_seed_that_keeps_us_choked(tmp_path: Path) -> None:
    payload, tfile, meta = make_torrent(tmp_path, 100_000, 16384)
    async with ScriptedSeed(meta, payload, unchoke=False) as seed:
        reason = await stalled_reason(tfile, tmp_path / "out", "--peer", f"127.0.0.1:{seed.port}")
    assert "choking us" in reason, reason


async def test_seed_missing_pieces(tmp_path: Path) -> None:
    payload, tfile, meta = make_torrent(tmp_path, 20 * 16384, 16384)
    have = Bitfield(meta.num_pieces)
    for i in range(0, 15):
        have.set(i)
    async with ScriptedSeed(meta, payload, have=have, reqq=16) as seed:
        reason = await stalled_reason(tfile, tmp_path / "out", "--peer", f"127.0.0.1:{seed.port}")
    assert reason.startswith("5 wanted pieces (in f.bin) held by none of the 1 connected peer"), (
        reason
    )


async def test_no_stall_while_pieces_arrive(tmp_path: Path) -> None:
    """A slow but moving download is not stalled (the check above can stay quiet)."""
    from swarm import Session

    payload, _tfile, meta = make_torrent(tmp_path, 64 * 16384, 16384)
    out = tmp_path / "out"
    out.mkdir()
    async with (
        ScriptedSeed(meta, payload, reqq=2, rate=200_000) as seed,
        Session("127.0.0.1", 0) as s,
    ):
        h = await s.add_torrent(meta, out, peers=[("127.0.0.1", seed.port)])
        h.stall_after = 0.5
        reasons: list[str | None] = []
        deadline = time.monotonic() + 20
        while not h.is_complete():
            assert time.monotonic() < deadline
            reasons.append(h._t.view.stalled_reason)
            await asyncio.sleep(0.1)
    assert not any(reasons[15:]), reasons  # once data flows, no reason is given


async def test_magnet_whose_only_peer_has_no_metadata(tmp_path: Path) -> None:
    """No DHT and no trackers: the engine's magnet path gives up with a clear error at once
    (not a stall) when its only peer cannot serve metadata."""
    payload, _tfile, meta = make_torrent(tmp_path, 100_000, 16384)
    out = tmp_path / "out"
    out.mkdir()
    # reqq set: it speaks BEP 10, but its extended handshake offers no ut_metadata
    async with ScriptedSeed(meta, payload, reqq=8) as seed:
        magnet = meta.magnet_uri(peers=[("127.0.0.1", seed.port)])
        proc = await asyncio.create_subprocess_exec(
            *swarm_get(magnet, out),
            "--json",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=ENV,
        )
        out_b, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 1, err
    text = err.decode()
    assert "metadata" in text and "Traceback" not in text
    assert "no ut_metadata extension" in text  # says why, naming the peer's missing extension
    events = [json.loads(line) for line in out_b.decode().splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert errors and errors[-1]["fatal"] and "ut_metadata" in errors[-1]["message"]
