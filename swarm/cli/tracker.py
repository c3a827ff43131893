"""`swarm tracker`: the tracker (HTTP and UDP announce, scrape, status page, metrics).

The work lives in ``tracker.server``; this module turns options into a
running server (one process, or ``--workers N`` forked processes sharing one
port through SO_REUSEPORT and one Redis store).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import Any

from swarm.errors import BadInput, SwarmError

from .common import add_output_options


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "tracker",
        help="run the tracker (HTTP and UDP)",
        description="Run the tracker: HTTP GET /announce, GET /scrape, a status page at /, "
        "/stats, /metrics (Prometheus); UDP (BEP 15) on the same port number.",
        epilog="example: swarm tracker --port 6969 --allow hashes.txt",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default all interfaces)")
    p.add_argument("--port", type=int, default=6969, help="port (default 6969; 0 = any free port)")
    p.add_argument(
        "--interval", type=int, default=1800, help="re-announce interval in seconds (default 1800)"
    )
    p.add_argument("--min-interval", type=int, default=None, help="'min interval' sent to clients")
    p.add_argument("--allow", metavar="FILE", help="only serve the info-hashes (40 hex) listed")
    p.add_argument("--trust-ip", action="store_true", help="honour the ip= parameter of announces")
    p.add_argument(
        "--no-full-scrape", action="store_true", help="refuse /scrape without an info_hash"
    )
    p.add_argument(
        "--store",
        default="memory:",
        metavar="URL",
        help="memory: (default) or redis://HOST:PORT/DB (needs: pip install 'swarm[redis]')",
    )
    p.add_argument(
        "--workers", type=int, default=1, help="processes serving one port (needs a redis store)"
    )
    p.add_argument(
        "--max-conns-per-ip",
        type=int,
        default=256,
        metavar="N",
        help="open connections one IP address may hold (default 256; 0 = no cap)",
    )
    p.add_argument(
        "--max-swarms-per-ip",
        type=int,
        default=10_000,
        metavar="N",
        help="swarms one IP address (IPv6: /64) may create, memory store (default 10000)",
    )
    p.add_argument(
        "--max-peers-per-ip",
        type=int,
        default=100_000,
        metavar="N",
        help="peer entries one IP address (IPv6: /64) may hold (default 100000)",
    )
    p.add_argument(
        "--udp-port",
        type=int,
        default=None,
        metavar="N",
        help="port of the UDP tracker (BEP 15; default: the same number as --port)",
    )
    p.add_argument("--no-udp", action="store_true", help="answer HTTP only, no UDP tracker")
    p.add_argument(
        "--no-fast-lane",
        action="store_true",
        help="answer every request through aiohttp (slower; for comparison)",
    )
    add_output_options(p, json=False)
    p.set_defaults(func=run)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    from tracker.app import load_allow_list

    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port}: expected 0..65535")
    if args.interval < 1:
        raise BadInput(f"--interval {args.interval}: expected a positive number of seconds")
    if args.min_interval is not None and not 0 <= args.min_interval <= args.interval:
        raise BadInput(f"--min-interval {args.min_interval}: expected 0..--interval")
    if args.udp_port is not None and not 0 <= args.udp_port <= 65535:
        raise BadInput(f"--udp-port {args.udp_port}: expected 0..65535")
    if args.workers < 1 or args.workers > 256:
        raise BadInput(f"--workers {args.workers}: expected 1..256")
    for flag in ("max_conns_per_ip", "max_swarms_per_ip", "max_peers_per_ip"):
        if getattr(args, flag) < (0 if flag == "max_conns_per_ip" else 1):
            raise BadInput(f"--{flag.replace('_', '-')} {getattr(args, flag)}: too small")
    if args.workers > 1 and not args.store.startswith(("redis://", "rediss://", "unix://")):
        raise BadInput("--workers needs a shared store: --store redis://HOST:PORT/DB")
    return {
        "interval": args.interval,
        "min_interval": args.min_interval,
        "allow": load_allow_list(args.allow) if args.allow else None,
        "trust_ip": args.trust_ip,
        "scrape_all": not args.no_full_scrape,
        "store": args.store,
        "fast_lane": not args.no_fast_lane,
        "max_conns_per_ip": args.max_conns_per_ip,
        "max_swarms_per_ip": args.max_swarms_per_ip,
        "max_peers_per_ip": args.max_peers_per_ip,
        "udp": not args.no_udp,
        "udp_port": args.udp_port,
    }


def _run_loop(coro: Any) -> int:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return int(runner.run(coro))
    except ImportError:
        return int(asyncio.run(coro))


def _die_with_parent() -> None:
    """A worker must not outlive its parent (a SIGKILLed parent cannot pass SIGTERM on)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def run(args: argparse.Namespace) -> int:
    from tracker.store import open_store

    options = _options(args)
    open_store(options["store"], peer_ttl=1.0)  # a bad URL is a usage error before binding
    if args.workers == 1:
        from tracker.server import serve

        return _run_loop(serve(args.host, args.port, quiet=args.quiet, **options))
    return _run_workers(args, options)


def _run_workers(args: argparse.Namespace, options: dict[str, Any]) -> int:
    """``--workers N``: N processes, each with its own SO_REUSEPORT sockets (TCP and UDP),
    one UDP connection-id secret (any worker accepts another's ids) and one directory
    of metric values, so ``/metrics`` of any worker is the whole tracker's."""
    from tracker import metrics  # before anything imports prometheus_client

    metrics_dir = metrics.multiprocess_dir()
    try:
        return _fork_workers(args, options)
    finally:
        metrics.remove_dir(metrics_dir)


def _fork_workers(args: argparse.Namespace, options: dict[str, Any]) -> int:
    from tracker.server import reuse_port_socket, serve
    from tracker.udp import udp_socket

    first = reuse_port_socket(args.host, args.port)
    udp_socks: list[Any] = [None] * args.workers
    udp, udp_port = options.pop("udp"), options.pop("udp_port")
    for _ in range(50 if udp and udp_port is None and args.port == 0 else 0):
        try:  # --port 0: a port whose UDP twin is free too
            udp_socks[0] = udp_socket(args.host, first.getsockname()[1], reuse_port=True)
            break
        except OSError:
            first.close()
            first = reuse_port_socket(args.host, 0)
    port = first.getsockname()[1]
    socks = [first] + [reuse_port_socket(args.host, port) for _ in range(args.workers - 1)]
    if udp:
        udp_port = port if udp_port is None else udp_port
        try:
            if udp_socks[0] is None:
                udp_socks[0] = udp_socket(args.host, udp_port, reuse_port=True)
            udp_port = udp_socks[0].getsockname()[1]
            udp_socks[1:] = [
                udp_socket(args.host, udp_port, reuse_port=True) for _ in range(args.workers - 1)
            ]
        except OSError as exc:
            raise SwarmError(
                f"tracker cannot listen on UDP {args.host}:{udp_port}: {exc.strerror or exc}"
            ) from None
        options["udp_secret"] = os.urandom(32)
    else:
        options["udp"] = False
    children: list[int] = []
    for n in range(1, args.workers):
        pid = os.fork()
        if pid == 0:  # child: serve on its own socket, exit without running the parent's code
            code = 1
            try:
                _die_with_parent()
                for i, (s, u) in enumerate(zip(socks, udp_socks, strict=True)):
                    if i != n:
                        s.close()
                        if u is not None:
                            u.close()
                code = _run_loop(
                    serve(
                        args.host,
                        port,
                        quiet=True,
                        sock=socks[n],
                        udp_sock=udp_socks[n],
                        worker=n,
                        **options,
                    )
                )
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    for s, u in zip(socks[1:], udp_socks[1:], strict=True):
        s.close()
        if u is not None:
            u.close()
    try:
        code = _run_loop(
            serve(args.host, port, quiet=args.quiet, sock=first, udp_sock=udp_socks[0], **options)
        )
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in children:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return code
