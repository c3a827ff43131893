"""`swarm check SOURCE [-o DIR]`: verify data on disk against a .torrent.

Read-only: opens the files without creating or writing anything (not even
resume data), hashes every piece in worker threads and reports bad or missing
pieces as ranges, per file. Exit 0 all good, 1 some bad, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from swarm.core.layout import ABSENT, ranges
from swarm.core.metainfo import Metainfo
from swarm.errors import BadInput

from .common import add_output_options, load_torrent

#: Files listed in the human report; --json always lists them all.
MAX_FILES_SHOWN = 20


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check",
        help="verify downloaded data against a .torrent",
        description="Hash the data on disk and report which pieces (and files) are bad or missing.",
        epilog="example: swarm check debian.iso.torrent -o ~/Downloads",
    )
    p.add_argument("source", metavar="SOURCE", help="the .torrent file")
    p.add_argument(
        "-o", "--output", metavar="DIR", default=".",
        help="directory the data was downloaded into (default: current directory)",
    )
    add_output_options(p)
    p.set_defaults(func=run)


def load(path: str) -> Metainfo:
    """Read and parse a .torrent; every failure is BadInput naming ``path``."""
    if path.startswith("magnet:"):
        raise BadInput("check needs a .torrent, not a magnet link")
    return load_torrent(path)


@dataclass
class FileReport:
    path: str
    length: int
    status: str  # ok | missing | short | bad
    bad: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class Report:
    num_pieces: int
    good: int
    verified: int
    bad: list[tuple[int, int]]
    files: list[FileReport]
    elapsed: float

    @property
    def complete(self) -> bool:
        return not self.bad and all(f.status == "ok" for f in self.files)


async def check(
    meta: Metainfo, root: str, progress: Callable[[int, int], None] | None = None
) -> Report:
    """Hash everything under ``root``; never creates or writes a file."""
    from swarm.storage import Storage

    started = time.monotonic()
    st = Storage(meta, root, read_cache_bytes=0)
    try:
        await st.open(create=False)
        have = await st.recheck(progress)
        sizes = await st.file_sizes()
    finally:
        await st.close()
    bad_set = set(have.missing())
    files: list[FileReport] = []
    for i, f in enumerate(meta.files):
        if f.pad or f.symlink is not None:
            continue
        bad = sorted(bad_set.intersection(st.layout.pieces_of_file(i)))
        if sizes[i] == ABSENT:
            status = "missing"
        elif sizes[i] < f.length:
            status = "short"
        elif bad:
            status = "bad"
        else:
            status = "ok"
        files.append(FileReport("/".join(f.path), f.length, status, ranges(bad)))
    verified = sum(meta.piece_size(i) for i in have)
    return Report(
        meta.num_pieces, have.count, verified, ranges(bad_set), files, time.monotonic() - started
    )


def _fmt_ranges(rs: list[tuple[int, int]], limit: int = 12) -> str:
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in rs[:limit]]
    if len(rs) > limit:
        parts.append(f"... ({len(rs) - limit} more ranges)")
    return ", ".join(parts)


def _human(meta: Metainfo, root: str, rep: Report) -> str:
    from swarm.ui.format import human_size

    where = os.path.join(root, meta.name)
    if rep.complete:
        return (
            f"{where}: all {rep.num_pieces} pieces OK "
            f"({human_size(meta.total_length)} in {rep.elapsed:.1f} s)\n"
        )
    nbad = rep.num_pieces - rep.good
    lines = [
        f"{where}: {rep.good}/{rep.num_pieces} pieces OK, {nbad} bad or missing"
        + (f": {_fmt_ranges(rep.bad)}" if rep.bad else "")
    ]
    wrong = [f for f in rep.files if f.status != "ok"]
    for f in wrong[:MAX_FILES_SHOWN]:
        # "bad pieces" rather than "corrupt": a piece spanning two files may
        # fail because of its neighbour.
        if f.status == "bad":
            lines.append(f"  {f.path}: bad pieces {_fmt_ranges(f.bad, 6)}")
        else:
            what = "missing" if f.status == "missing" else "shorter than expected"
            detail = f" (pieces {_fmt_ranges(f.bad, 6)})" if f.bad else ""
            lines.append(f"  {f.path}: {what}{detail}")
    if len(wrong) > MAX_FILES_SHOWN:
        lines.append(f"  ... and {len(wrong) - MAX_FILES_SHOWN} more files (see --json)")
    return "\n".join(lines) + "\n"


def _json_lines(meta: Metainfo, root: str, rep: Report) -> list[dict[str, Any]]:
    now = time.time()
    ih = meta.info_hash_hex
    return [
        {
            "event": "summary", "time": now, "info_hash": ih,
            "state": "stopped", "complete": rep.complete, "verified": rep.verified,
            "total_size": meta.total_length, "downloaded": 0, "uploaded": 0,
            "elapsed": round(rep.elapsed, 3), "ratio": 0.0,
            # check-specific (the schema is additive):
            "path": root, "num_pieces": rep.num_pieces, "good_pieces": rep.good,
            "bad_pieces": [list(r) for r in rep.bad],
            "files": [
                {"path": f.path, "length": f.length, "status": f.status,
                 "bad_pieces": [list(r) for r in f.bad]}
                for f in rep.files
            ],
        }
    ]


def _progress_event(meta: Metainfo, done: int, total: int) -> dict[str, Any]:
    verified_guess = min(meta.total_length, done * meta.piece_length)
    return {
        "event": "progress", "time": time.time(), "info_hash": meta.info_hash_hex,
        "state": "checking",
        "progress": round(verified_guess / meta.total_length, 6) if meta.total_length else 1.0,
        "verified": verified_guess, "total_size": meta.total_length,
        "down_rate": 0.0, "up_rate": 0.0, "downloaded": 0, "uploaded": 0,
        "peers": 0, "seeds": 0, "eta": None,
        "checked_pieces": done, "num_pieces": total,
    }


def run(args: argparse.Namespace) -> int:
    from swarm.ui.jsonl import dumps

    meta = load(args.source)
    root = args.output
    if not os.path.isdir(root):
        raise BadInput(f"{root}: no such directory")
    as_json = bool(getattr(args, "json", False))
    quiet = bool(getattr(args, "quiet", False))

    def emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(dumps(obj) + "\n")
        sys.stdout.flush()

    progress: Callable[[int, int], None] | None = None
    bar: Any = None
    if as_json:
        emit({
            "event": "added", "time": time.time(), "info_hash": meta.info_hash_hex,
            "name": meta.name, "state": "checking", "total_size": meta.total_length,
            "num_pieces": meta.num_pieces, "piece_length": meta.piece_length,
            "torrent": args.source, "path": root,
            **({"info_hash_v2": meta.info_hash_v2_hex} if meta.info_hash_v2_hex else {}),
        })
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0 or done >= total:
                last[0] = now
                emit(_progress_event(meta, done, total))

    elif not quiet and sys.stderr.isatty() and os.environ.get("TERM", "") != "dumb":
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        bar = Progress(
            f"checking {meta.name}", BarColumn(), MofNCompleteColumn(), "pieces",
            TimeRemainingColumn(), console=Console(stderr=True), transient=True,
        )
        task = bar.add_task("check", total=meta.num_pieces)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done)

    if bar is not None:
        with bar:
            rep = asyncio.run(check(meta, root, progress))
    else:
        rep = asyncio.run(check(meta, root, progress))
    if as_json:
        for obj in _json_lines(meta, root, rep):
            emit(obj)
    elif not quiet:
        sys.stdout.write(_human(meta, root, rep))
        sys.stdout.flush()
    return 0 if rep.complete else 1
