"""A swarm initial seed's first pass, seen by libtorrent leechers, on 127.0.0.1.

The first pass (``core.seeding.FirstPass``) refuses a piece another peer owns
with a BEP 6 reject; it was measured with swarm leechers only. Here N
libtorrent leechers start together behind a swarm seed (``seed_only``, as
``swarm seed``; ``--max-up`` makes the seed the bottleneck) and the run is
timed with the first pass on and off (off: the seed's ``Uploader.first_pass``
set to None, the state of a seed before it). Prints per run: time until all
are done, first/last leecher, bytes the seed sent (in copies of the file),
its rejects (all, and those of the first pass).

``--selective``: a multi-file torrent; N leechers fetch the first files and
leave, then one leecher wants only the last file. ``--aria2``: N aria2c
leechers (found through an in-process swarm tracker) instead of libtorrent.

    .venv/bin/python benchmarks/bench_first_pass_foreign.py --leechers 4 --size 48M --max-up 8M
    .venv/bin/python benchmarks/bench_first_pass_foreign.py --selective
    .venv/bin/python benchmarks/bench_first_pass_foreign.py --aria2 --leechers 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import libtorrent as lt

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from swarm import Session  # noqa: E402
from swarm.create import create_torrent  # noqa: E402
from tests.helpers.aria2 import aria2_args, free_port  # noqa: E402
from tests.helpers.lt import lt_session  # noqa: E402

MiB = 1 << 20


def size_arg(text: str) -> int:
    mult = {"K": 1 << 10, "M": MiB, "G": 1 << 30}.get(text[-1:].upper(), 1)
    return int(float(text.rstrip("KMGkmg")) * mult)


class Counted:
    """The seed's rejects, counted by wrapping its Uploader (no change to swarm)."""

    def __init__(self, uploader: Any, first_pass: bool) -> None:
        self.rejects = 0
        self.refusals = 0
        #: (peer, piece) refused by the first pass -> times: a client asking again at once
        self.refused: dict[tuple[int, int], int] = {}
        reject = uploader.reject

        def counting_reject(*args: Any) -> None:
            self.rejects += 1
            reject(*args)

        uploader.reject = counting_reject
        if not first_pass:
            uploader.first_pass = None
        elif uploader.first_pass is not None:
            fp = uploader.first_pass
            refuse = getattr(fp, "refuse", None)
            if refuse is None:  # before the fix: every "no" of may_serve was a reject at once
                may_serve = fp.may_serve

                def counting_may_serve(peer: Any, index: int, *rest: Any) -> bool:
                    ok: bool = may_serve(peer, index, *rest)
                    if not ok:
                        self.note(peer, index)
                    return ok

                fp.may_serve = counting_may_serve
            else:

                def counting_refuse(peer: Any, index: int, begin: int) -> float:
                    self.note(peer, index)
                    delay: float = refuse(peer, index, begin)
                    return delay

                fp.refuse = counting_refuse

    def note(self, peer: Any, index: int) -> None:
        self.refusals += 1
        key = (id(peer), index)
        self.refused[key] = self.refused.get(key, 0) + 1

    def summary(self) -> str:
        most = max(self.refused.values(), default=0)
        return f"rejects {self.rejects} (first pass {self.refusals}, {len(self.refused)} peer-pieces, at most {most} each)"


def lt_leecher(torrent: bytes, save: Path, files: list[int] | None = None) -> tuple[Any, Any]:
    ses = lt_session(lt, enable_outgoing_utp=False, enable_incoming_utp=False)  # TCP, as swarm
    p = lt.add_torrent_params()
    p.ti = lt.torrent_info(lt.bdecode(torrent))
    p.save_path = str(save)
    if files is not None:
        n = p.ti.num_files()
        p.file_priorities = [4 if i in files else 0 for i in range(n)]
    return ses, ses.add_torrent(p)


async def wait_done(handles: list[Any], timeout: float, started: float) -> list[float]:
    """Seconds from ``started`` until each handle is finished (its wanted files)."""
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(handles):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)}/{len(handles)} done after {timeout} s")
        for i, h in enumerate(handles):
            if i not in done and h.status().is_finished:
                done[i] = time.monotonic() - started
        await asyncio.sleep(0.02)
    return [done[i] for i in range(len(handles))]


async def swarm_run(args: argparse.Namespace, first_pass: bool, work: Path) -> None:
    tracker = None
    if args.aria2:
        from tracker.server import start_tracker

        tracker = await start_tracker("127.0.0.1", 0, interval=60)
    try:
        make_data(work, args, [tracker.url] if tracker is not None else [])
        await seed_and_leech(args, first_pass, work)
    finally:
        if tracker is not None:
            await tracker.close()


async def seed_and_leech(args: argparse.Namespace, first_pass: bool, work: Path) -> None:
    src = work / "src"
    torrent = (work / "t.torrent").read_bytes()
    total = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    async with Session("127.0.0.1", 0, max_up=args.max_up) as s:
        seed = await s.add_torrent(torrent, src, seed_only=True)
        count = Counted(seed._t.uploader, first_pass)
        port = s.port or 0
        tag = "on " if first_pass else "off"
        if args.aria2:
            await aria2_case(args, work, seed, count, total, tag)
        elif not args.selective:
            await full_case(args, torrent, work, port, seed, count, total, tag)
        else:
            await selective_case(args, torrent, work, port, seed, count, total, tag)


async def swarm_of_leechers(
    args: argparse.Namespace, torrent: bytes, work: Path, port: int, tag: str, files: list[int] | None = None
) -> tuple[list[tuple[Any, Any]], list[float]]:
    """``args.leechers`` libtorrent leechers, each told of the seed and of those before it;
    returns them and the seconds each took, once all are done."""
    leechers = []
    for i in range(args.leechers):
        out = work / f"lt{tag.strip()}{i}"
        out.mkdir()
        leechers.append(lt_leecher(torrent, out, files=files))
    started = time.monotonic()
    for i, (_ses, h) in enumerate(leechers):
        h.connect_peer(("127.0.0.1", port))
        for ses2, _ in leechers[:i]:
            h.connect_peer(("127.0.0.1", ses2.listen_port()))
    times = await wait_done([h for _, h in leechers], args.timeout, started)
    return leechers, times


async def full_case(
    args: argparse.Namespace,
    torrent: bytes,
    work: Path,
    port: int,
    seed: Any,
    count: Counted,
    total: int,
    tag: str,
) -> None:
    leechers, times = await swarm_of_leechers(args, torrent, work, port, tag)
    up = seed._t.uploader.uploaded
    print(
        f"first pass {tag}: all done {max(times):6.2f} s  first {min(times):6.2f}  "
        f"median {statistics.median(times):6.2f}  seed sent {up / total:4.2f} copies  {count.summary()}",
        flush=True,
    )
    del leechers


async def selective_case(
    args: argparse.Namespace,
    torrent: bytes,
    work: Path,
    port: int,
    seed: Any,
    count: Counted,
    total: int,
    tag: str,
) -> None:
    early, times = await swarm_of_leechers(args, torrent, work, port, tag, files=[0, 1])
    for ses, h in early:
        ses.remove_torrent(h)
    await asyncio.sleep(1.0)  # let the seed see them go (a benchmark, not a test)
    out = work / f"late{tag.strip()}"
    out.mkdir()
    late = lt_leecher(torrent, out, files=[3])
    started = time.monotonic()
    late[1].connect_peer(("127.0.0.1", port))
    (late_time,) = await wait_done([late[1]], args.timeout, started)
    print(
        f"first pass {tag}: early leechers (files 0-1) {max(times):6.2f} s, late leecher (file 3) "
        f"{late_time:6.2f} s  seed sent {seed._t.uploader.uploaded / total:4.2f} copies  {count.summary()}",
        flush=True,
    )


def aria2_done(out: Path) -> bool:
    """aria2c ran the hook (``--on-bt-download-complete``) that marks its download done."""
    return (out / "data.bin.done").exists()


async def aria2_case(
    args: argparse.Namespace, work: Path, seed: Any, count: Counted, total: int, tag: str
) -> None:
    aria2c = shutil.which("aria2c")
    if aria2c is None:
        raise SystemExit("aria2c is not installed")
    hook = work / "done.sh"  # aria2c runs it with: gid, number of files, first file's path
    hook.write_text('#!/bin/sh\ntouch "$3.done"\n')
    hook.chmod(0o755)
    procs, outs = [], []
    started = time.monotonic()
    for i in range(args.leechers):
        out = work / f"aria{tag.strip()}{i}"
        out.mkdir()
        outs.append(out)
        procs.append(
            await asyncio.create_subprocess_exec(
                *aria2_args(aria2c, free_port()),
                "--seed-time=10",
                f"--on-bt-download-complete={hook}",
                f"--dir={out}",
                str(work / "t.torrent"),
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        )
    done: dict[int, float] = {}
    try:
        deadline = started + args.timeout
        while len(done) < len(outs):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(done)}/{len(outs)} aria2c done after {args.timeout} s")
            for i, out in enumerate(outs):
                if i not in done and aria2_done(out):
                    done[i] = time.monotonic() - started
            await asyncio.sleep(0.02)
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGKILL)
            await proc.wait()
    times = list(done.values())
    print(
        f"first pass {tag} (aria2c): all done {max(times):6.2f} s  first {min(times):6.2f}  "
        f"seed sent {seed._t.uploader.uploaded / total:4.2f} copies  {count.summary()}",
        flush=True,
    )


def make_data(work: Path, args: argparse.Namespace, trackers: list[str]) -> None:
    src = work / "src"
    src.mkdir()
    if args.selective:
        d = src / "multi"
        d.mkdir()
        for i in range(4):
            (d / f"f{i}.bin").write_bytes(os.urandom(args.size // 4 + 1000 * i))
        data = create_torrent(d, piece_length=args.piece, trackers=trackers)
    else:
        (src / "data.bin").write_bytes(os.urandom(args.size))
        data = create_torrent(src / "data.bin", piece_length=args.piece, trackers=trackers)
    (work / "t.torrent").write_bytes(data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leechers", type=int, default=4)
    ap.add_argument("--size", type=size_arg, default=48 * MiB)
    ap.add_argument("--piece", type=size_arg, default=256 * 1024)
    ap.add_argument(
        "--max-up", type=size_arg, default=8 * MiB, help="the seed's upload limit, bytes/s"
    )
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--selective", action="store_true")
    ap.add_argument("--aria2", action="store_true", help="aria2c leechers instead of libtorrent")
    args = ap.parse_args()
    for _ in range(args.runs):
        for first_pass in (True, False):
            with tempfile.TemporaryDirectory() as tmp:
                work = Path(tmp)
                asyncio.run(swarm_run(args, first_pass, work))


if __name__ == "__main__":
    main()
