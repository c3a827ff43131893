"""`swarm daemon`: one session with many torrents, an HTTP API and a web page (docs/daemon.md).

Runs until SIGINT/SIGTERM (exit 0). Its state lives in ``DIR/.swarm-daemon/``;
a restart, even after ``kill -9``, brings every torrent back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from swarm.errors import BadInput

from .common import (
    add_discovery_options,
    add_network_options,
    add_output_options,
    add_peer_limit_options,
    add_rate_options,
    listening_fields,
    peer_limits,
    peer_ports,
)
from .get import install_stop_signals, run_engine

if TYPE_CHECKING:
    from swarm.daemon.core import Daemon
    from swarm.ui.multi import MultiReporter

DEFAULT_API = "127.0.0.1:9091"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "daemon",
        help="run many torrents in one process, driven by an HTTP API and a web page",
        description="Run one session with many torrents until Ctrl-C. Downloads go to DIR; "
        "the state (torrents, options, paused or not) lives in DIR/.swarm-daemon/.",
        epilog="example: swarm daemon -o ~/torrents --watch ~/Downloads   (then: swarm remote list)",
    )
    p.add_argument("-o", "--output", metavar="DIR", default=".", help="download directory and home of the state (default .)")
    p.add_argument("--watch", metavar="DIR", help="add every *.torrent that appears in DIR (renamed .added or .invalid)")
    p.add_argument(
        "--share", action="append", default=[], metavar="DIR",
        help="a directory the API may seed files from and download into (repeatable; DIR always may)",
    )
    p.add_argument("--api", metavar="ADDR:PORT", default=DEFAULT_API, help=f"HTTP API address (default {DEFAULT_API}; port 0 = free)")
    p.add_argument("--token", metavar="TOKEN", help="require Authorization: Bearer TOKEN (needed off loopback)")
    add_network_options(p)
    add_discovery_options(p)
    add_rate_options(p)  # for all the daemon's torrents together
    add_peer_limit_options(p)
    add_output_options(p)
    p.set_defaults(func=run)


def parse_api(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9091`` for IPv6) as (host, port); BadInput otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise BadInput(f"--api {text}: expected ADDR:PORT, e.g. 127.0.0.1:9091")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args: argparse.Namespace) -> int:
    api_host, api_port = parse_api(args.api)
    if not is_loopback(api_host) and not args.token:
        raise BadInput(f"--api {args.api}: not a loopback address; give --token TOKEN so that only you can drive it")
    peer_ports(args)
    root = Path(args.output)
    from .get import _check_output_dir

    _check_output_dir(root)
    for folder in [*args.share, *([args.watch] if args.watch else [])]:
        if not Path(folder).is_dir():
            raise BadInput(f"{folder}: not a directory")
    return run_engine(lambda: _daemon(args, root, api_host, api_port))


async def _daemon(args: argparse.Namespace, root: Path, api_host: str, api_port: int) -> int:
    from aiohttp import web

    from swarm.daemon.api import Api
    from swarm.daemon.core import Daemon
    from swarm.daemon.events import EventHub
    from swarm.daemon.state import StateStore
    from swarm.daemon.watch import WatchFolder
    from swarm.session import Session
    from swarm.ui import choose_mode
    from swarm.ui.jsonl import JsonReporter
    from swarm.ui.multi import MultiReporter

    from .common import discovery_options

    stop = asyncio.Event()
    install_stop_signals(stop, [])
    store = StateStore(root)
    hub = EventHub(echo=sys.stdout if args.json else None)
    options = discovery_options(args)
    options["max_up"], options["max_down"] = args.max_up, args.max_down  # session-wide
    options.update(peer_limits(args))
    options["state_dir"] = store.resume_dir()  # seeds' resume data and the DHT table, with the state
    session = Session(args.host, **peer_ports(args), **options)  # type: ignore[arg-type]
    await session.start()
    daemon = Daemon(session, root, store, hub, shares=[Path(s) for s in args.share])
    runner: web.AppRunner | None = None
    watcher: asyncio.Task[None] | None = None
    table: MultiReporter | None = None
    try:
        await daemon.start()
        api = Api(daemon, bound_host=api_host, token=args.token)
        runner = web.AppRunner(api.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, api_host, api_port)
        try:
            await site.start()
        except OSError as exc:
            from swarm.errors import SwarmError

            raise SwarmError(f"--api {args.api}: cannot listen: {exc.strerror or exc}") from None
        bound = int(runner.addresses[0][1])
        shown = f"[{api_host}]" if ":" in api_host else api_host
        url = f"http://{shown}:{bound}"
        say = JsonReporter(stream=hub)  # type: ignore[arg-type]
        say.emit("listening", listening_fields(args, session))
        say.emit("api", {"url": url})
        if not args.json and not args.quiet:
            port_note = listening_fields(args, session)
            taken = f" ({port_note['requested_port']} was taken)" if "requested_port" in port_note else ""
            print(f"swarm daemon: {len(daemon.torrents)} torrent(s) in {root.resolve()}", flush=True)
            print(f"peers on {args.host}:{session.port}{taken}; API and web page on {url}", flush=True)
        if args.watch:
            watcher = asyncio.get_running_loop().create_task(WatchFolder(daemon, Path(args.watch)).run())
        if choose_mode(args.json, args.quiet, sys.stdout.isatty()) == "live":
            table = MultiReporter("live")
            await _show_table(daemon, table, stop)
        else:
            await stop.wait()
    finally:
        if table is not None:
            table.close([])
        if watcher is not None:
            watcher.cancel()
        hub.close()
        if runner is not None:
            await runner.cleanup()
        await daemon.close()
        await session.close()
    return 0


async def _show_table(daemon: Daemon, table: MultiReporter, stop: asyncio.Event) -> None:
    """On a terminal: the torrents as one live table (a row each, totals) until ``stop``."""
    while not stop.is_set():
        table.update([s for m in daemon.torrents.values() if (s := m.status()) is not None], complete=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)

