"""`swarm info FILE.torrent`: what a .torrent holds, for people or (--json) scripts."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from typing import Any

from swarm.core.metainfo import Metainfo
from swarm.ui.format import human_size

from .common import add_output_options, load_torrent


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "info",
        help="show what a .torrent holds",
        description="Print name, size, pieces, files, trackers, info-hash and magnet of a .torrent.",
        epilog="example: swarm info ubuntu.iso.torrent --json",
    )
    p.add_argument("torrent", metavar="FILE.torrent", help="the .torrent file")
    add_output_options(p)
    p.set_defaults(func=run)


VERSION_NAMES: dict[int | str, str] = {1: "v1", 2: "v2", "hybrid": "hybrid"}


def as_dict(meta: Metainfo) -> dict[str, Any]:
    """The stable --json schema of `swarm info` (event "info")."""
    return {
        "event": "info",
        "time": time.time(),
        "name": meta.name,
        "info_hash": meta.info_hash_hex,
        "size": meta.total_length,
        "piece_length": meta.piece_length,
        "pieces": meta.num_pieces,
        "private": meta.private,
        "multi_file": meta.multi_file,
        "files": [
            {"path": "/".join(f.path), "length": f.length, "offset": f.offset}
            for f in meta.files
            if not f.pad
        ],
        "trackers": meta.trackers,
        "web_seeds": meta.url_list,
        "comment": meta.comment,
        "created_by": meta.created_by,
        "creation_date": meta.creation_date,
        "magnet": meta.magnet_uri(),
        "warnings": meta.warnings,
        "version": VERSION_NAMES[meta.version],
        **({"info_hash_v2": meta.info_hash_v2_hex} if meta.info_hash_v2_hex else {}),
    }


def _date(ts: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return str(ts)


def run(args: argparse.Namespace) -> int:
    meta = load_torrent(args.torrent)
    if getattr(args, "quiet", False):
        return 0
    # warnings are diagnostics: stderr, so stdout stays the description (or pure JSON)
    for warning in meta.warnings:
        sys.stderr.write(f"swarm: warning: {warning}\n")
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(as_dict(meta), ensure_ascii=False) + "\n")
        return 0
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True)
    real_files = [f for f in meta.files if not f.pad]
    rows = [
        ("name", escape(meta.name)),
        ("size", f"{human_size(meta.total_length)} ({meta.total_length} bytes)"),
        (
            "pieces",
            f"{meta.num_pieces} x {human_size(meta.piece_length)} ({meta.piece_length} bytes)",
        ),
        ("private", "yes" if meta.private else "no"),
        ("files", str(len(real_files))),
        ("version", VERSION_NAMES[meta.version]),
    ]
    if meta.version != 2:
        rows.append(("info-hash", meta.info_hash_hex))
    if meta.info_hash_v2_hex is not None:
        rows.append(("info-hash v2", meta.info_hash_v2_hex))
    if meta.comment:
        rows.append(("comment", escape(meta.comment)))
    if meta.created_by:
        rows.append(("created by", escape(meta.created_by)))
    if meta.creation_date is not None:
        rows.append(("created", _date(meta.creation_date)))
    width = max(11, *(len(key) + 1 for key, _ in rows))
    for key, value in rows:
        console.print(f"[bold]{key + ':':<{width}}[/bold] {value}")
    if meta.trackers:
        console.print("[bold]trackers:[/bold]")
        for i, tier in enumerate(meta.trackers):
            for url in tier:
                console.print(f"  tier {i}: {escape(url)}")
    if meta.url_list:
        console.print("[bold]web seeds:[/bold]")
        for url in meta.url_list:
            console.print(f"  {escape(url)}")
    if meta.multi_file:
        table = Table(title=None, show_edge=False, pad_edge=False)
        table.add_column("file")
        table.add_column("size", justify="right")
        table.add_column("bytes", justify="right")
        for f in real_files:
            table.add_row(escape("/".join(f.path[1:])), human_size(f.length), str(f.length))
        console.print(table)
    console.print(f"[bold]magnet:[/bold]     {escape(meta.magnet_uri())}")
    return 0
