"""`swarm seed PATH`: share a file or directory until SIGINT/SIGTERM.

Without ``--torrent`` a ``<name>.torrent`` is created in the current
directory first; with it, PATH is verified against it. ``--with-tracker``
runs the tracker in the same process and writes its URLs (HTTP and UDP, with
this machine's LAN address) into the .torrent: one command shares a file on a LAN.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from swarm.errors import BadInput, MetainfoError

from .common import (
    add_discovery_options,
    add_metrics_options,
    add_network_options,
    add_output_options,
    add_peer_limit_options,
    add_rate_options,
    check_metrics_options,
    listening_fields,
    load_torrent,
    peer_limits,
    peer_ports,
    start_metrics,
)
from .get import UPDATE_EVERY, drive, install_stop_signals, run_engine

if TYPE_CHECKING:
    from swarm.core.metainfo import Metainfo
    from swarm.session import TorrentHandle
    from swarm.ui.multi import MultiReporter


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "seed",
        help="share a file or directory (creates the .torrent if needed)",
        description="Serve PATH to the swarm until Ctrl-C. Without --torrent, "
        "<name>.torrent is created in the current directory first.",
        epilog="example: swarm seed ./photos --with-tracker   (then: swarm get photos.torrent)",
    )
    p.add_argument(
        "path", metavar="PATH", nargs="+",
        help="file or directory to share (several: one process, one port, one display)",
    )
    p.add_argument(
        "--torrent", metavar="FILE", help="an existing .torrent for PATH (verified first; a single PATH only)"
    )
    p.add_argument(
        "-t", "--tracker", action="append", default=[], metavar="URL",
        help="tracker announce URL for a new .torrent (repeatable)",
    )
    add_network_options(p)
    p.add_argument("--with-tracker", action="store_true", help="run the tracker in this process too")
    p.add_argument("--tracker-port", type=int, default=6969, metavar="N", help="its port (default 6969; 0 = free)")
    p.add_argument(
        "--piece-length", type=int, metavar="BYTES", help="piece length of a new .torrent (power of two)"
    )
    p.add_argument(
        "--super-seed", action="store_true",
        help="BEP 16: show each peer one piece at a time, so each first copy leaves once",
    )
    add_discovery_options(p)
    add_rate_options(p)
    add_peer_limit_options(p)
    add_metrics_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.path]
    seen: dict[Path, str] = {}
    for path, text in zip(paths, args.path, strict=True):
        if not path.exists():
            raise BadInput(f"{text}: no such file or directory")
        if path.resolve() in seen:
            raise BadInput(f"{text}: given twice (as {seen[path.resolve()]})")
        seen[path.resolve()] = text
    meta = None
    if args.torrent:
        if len(paths) > 1:
            raise BadInput("--torrent FILE goes with a single PATH")
        meta = load_torrent(args.torrent)
        if meta.name != paths[0].name:
            raise MetainfoError(f"{args.torrent}: the torrent is for {meta.name!r}, not {paths[0].name!r}")
    peer_ports(args)  # a bad --port is exit 2 before anything is created
    if not 0 <= args.tracker_port < 65536:
        raise BadInput(f"--tracker-port {args.tracker_port}: not a port number")
    check_metrics_options(args)
    return run_engine(lambda: _seed(args, paths, meta))


async def _seed(args: argparse.Namespace, paths: list[Path], given: Metainfo | None) -> int:
    from swarm.session import Session
    from swarm.ui import choose_mode, make_reporter
    from swarm.ui.multi import MultiReporter

    mode = choose_mode(args.json, args.quiet, sys.stdout.isatty())
    reporter = make_reporter(mode)
    many = MultiReporter(mode) if len(paths) > 1 else None
    stop = asyncio.Event()
    got: list[int] = []
    install_stop_signals(stop, got)
    tracker = None
    session: Session | None = None
    handles: list[TorrentHandle] = []
    metrics = None
    try:
        trackers = list(args.tracker)
        tiers: list[list[str]] = []
        if args.with_tracker:
            from tracker.server import start_tracker

            host = args.host
            tracker = await start_tracker(host, args.tracker_port)
            # Both URLs in one tier: they reach one tracker and one store, so a client
            # announces to one of them (BEP 12), never to both. HTTP first: it becomes
            # `announce`, what a client without announce-list (or without UDP) reads, and
            # a client taking the tier in order keeps the transport seeds used before;
            # libtorrent (prefer_udp_trackers), qBittorrent and Transmission put UDP
            # first within a tier themselves, and swarm's own client shuffles a tier.
            tiers.append(tracker.urls)
        shared: list[tuple[Path, Metainfo, Path | str]] = []
        for path in paths:
            if given is not None:
                shared.append((path, given, Path(args.torrent)))
                continue
            from swarm.create import create_torrent_async

            result = await create_torrent_async(
                path, trackers=trackers, piece_length=args.piece_length, tiers=tiers
            )
            shared.append((path, result.meta, await _save_torrent(result.meta.name, result.data)))
        from .common import discovery_options  # discovery hook

        options: dict[str, Any] = {
            **peer_ports(args), **discovery_options(args), "max_up": args.max_up, "max_down": args.max_down
        }
        options.update(peer_limits(args))
        session = Session(args.host, **options)
        await session.start()
        peer_addr = (session.reachable_host(), session.port or 0)
        for path, meta, torrent_path in shared:
            handle = await session.add_torrent(
                meta, path.parent, seed_only=True, super_seed=args.super_seed
            )
            handles.append(handle)
            fields = {
                "torrent": str(torrent_path), "path": str(path),
                "magnet": meta.magnet_uri(peers=[peer_addr]), "info_hash_v2": meta.info_hash_v2_hex,
            }
            if many is not None:
                many.start(handle.status(), **fields)
            else:
                reporter.start(handle.status(), **fields)
        metrics = await start_metrics(args, session, handles)
        if many is not None:
            many.event(None, "listening", **listening_fields(args, session))
        else:
            reporter.event("listening", **listening_fields(args, session))
        for handle, (path, _, _) in zip(handles, shared, strict=True):
            status = handle.status()
            if status.state != "seeding":
                message = (
                    f"{path}: only {status.verified} of {status.total_size} bytes match the torrent; "
                    "seeding what is there"
                )
                if many is not None:
                    many.event(status.info_hash, "error", message=message, fatal=False)
                else:
                    reporter.event("error", message=message, fatal=False)
        if many is not None:
            await drive_many(handles, many, stop)
        else:
            await drive(handles[0], reporter, stop, until_complete=False)
    finally:
        if metrics is not None:
            await metrics.close()
        if session is not None:
            await session.close()
        if tracker is not None:
            await tracker.close()
        if many is not None:
            many.close([h.status() for h in handles])
        else:
            reporter.close(handles[0].status() if handles else None)
    return 0


async def drive_many(handles: list[TorrentHandle], reporter: MultiReporter, stop: asyncio.Event) -> None:
    """Feed the reporter every torrent's events and snapshots until ``stop``."""

    async def pump(handle: TorrentHandle) -> None:
        ih = handle.info_hash.hex()
        async for kind, fields in handle.events():
            if kind == "piece" and fields.get("action") == "verified" and reporter.mode != "json":
                continue  # a line per piece is noise on a terminal or in a log
            reporter.event(ih, kind, **fields)

    pumps = [asyncio.ensure_future(pump(h)) for h in handles]
    try:
        while not stop.is_set():
            reporter.update([h.status() for h in handles])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), UPDATE_EVERY)
    finally:
        await asyncio.sleep(0)  # let queued events reach the reporter
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)


async def _save_torrent(name: str, data: bytes) -> Path | str:
    """Keep the new .torrent as ./<name>.torrent the way `get` keeps a magnet's (no symlink
    followed, no other file replaced: a numbered name instead, with a warning on stderr)."""
    from .get import save_torrent_file, warn

    saved = await asyncio.to_thread(save_torrent_file, Path.cwd(), name, data, warn)
    return saved if saved is not None else "(not saved)"

