"""Options shared by several commands, so they are spelled the same everywhere."""

from __future__ import annotations

import argparse
import os
from typing import Any

from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.errors import BadInput, MetainfoError


def add_output_options(p: argparse.ArgumentParser, json: bool = True) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    p.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        type=str.upper,
        help="logging verbosity on stderr (default WARNING)",
    )
    if json:
        p.add_argument(
            "--json", action="store_true", help="one JSON object per line on stdout, for scripts"
        )


def add_network_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--port", type=int, default=None,
        help="peer port (default 6881, or the first free of 6882-6889, then any free port; "
        "0 = any free port; a taken N is an error)",
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default all interfaces)")
    p.add_argument(
        "--encryption",
        choices=["prefer", "require", "off"],
        default="prefer",
        help="protocol encryption (MSE/PE): prefer (default: try it, accept both), "
        "require (RC4 only, both ways), off (plain only)",
    )


#: Peer ports tried in order without --port (then any free one). SWARM_PEER_PORTS=FIRST-LAST
#: replaces them, so tests never depend on 6881 being free.
DEFAULT_PEER_PORTS = range(6881, 6890)


def peer_ports(args: argparse.Namespace) -> dict[str, object]:
    """Session keyword arguments ``port`` and ``fallback_ports`` from --port (BadInput if out of range)."""
    if args.port is not None:
        if not 0 <= args.port < 65536:
            raise BadInput(f"--port {args.port}: not a port number")
        return {"port": args.port, "fallback_ports": ()}
    ports: range = DEFAULT_PEER_PORTS
    override = os.environ.get("SWARM_PEER_PORTS")
    if override:
        first, _, last = override.partition("-")
        try:
            ports = range(int(first), int(last or first) + 1)
        except ValueError:
            ports = range(0)
        if not ports or not 0 < ports[0] <= ports[-1] < 65536:
            raise BadInput(f"SWARM_PEER_PORTS={override}: expected FIRST-LAST, e.g. 6881-6889")
    return {"port": ports[0], "fallback_ports": [*ports[1:], 0]}


def listening_fields(args: argparse.Namespace, session: Any) -> dict[str, object]:
    """The ``listening`` event: the bound port, and the one asked for when it was taken."""
    fields: dict[str, object] = {"host": args.host, "port": session.port or 0}
    if session.requested_port not in (0, session.port):
        fields["requested_port"] = session.requested_port
    return fields


def _rate(text: str) -> int:
    from swarm.core.ratelimit import parse_rate

    try:
        return parse_rate(text)
    except BadInput as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_rate_options(p: argparse.ArgumentParser) -> None:
    """--max-up / --max-down (seed, get): payload bytes per second, binary units."""
    p.add_argument(
        "--max-up", type=_rate, default=0, metavar="RATE",
        help="upload at most RATE bytes/s of payload; K, M, G are KiB, MiB, GiB (500K, 2M); 0 = unlimited",
    )
    p.add_argument(
        "--max-down", type=_rate, default=0, metavar="RATE",
        help="download at most RATE bytes/s of payload, peers and web seeds together; "
        "K, M, G are KiB, MiB, GiB (500K, 2M); 0 = unlimited",
    )


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number, 0 or more")
    return n


def add_peer_limit_options(p: argparse.ArgumentParser) -> None:
    """--max-peers-per-ip (seed, get, daemon): incoming connections per remote address."""
    from swarm.core.admission import DEFAULT_PEERS_PER_IP

    p.add_argument(
        "--max-peers-per-ip", type=_count, default=DEFAULT_PEERS_PER_IP, metavar="N",
        help=f"accept at most N connections per torrent from one IP address (default {DEFAULT_PEERS_PER_IP}: "
        "several clients on one machine or behind one NAT; 0 = no cap)",
    )  # fmt: skip


def peer_limits(args: argparse.Namespace) -> dict[str, int]:
    """The Session keywords of ``add_peer_limit_options``."""
    return {"max_peers_per_ip": args.max_peers_per_ip}


def add_discovery_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-lsd", action="store_true", help="turn LAN multicast discovery off")
    p.add_argument("--no-dht", action="store_true", help="turn the DHT off")
    p.add_argument(
        "--dht-bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to bootstrap from (repeatable; replaces the public routers)",
    )


def add_metrics_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--metrics", type=int, metavar="PORT",
        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0 = a free port)",
    )  # fmt: skip
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="ADDR",
        help="address of the --metrics endpoint (default 127.0.0.1)",
    )  # fmt: skip


def check_metrics_options(args: argparse.Namespace) -> None:
    if args.metrics is not None and not 0 <= args.metrics < 65536:
        raise BadInput(f"--metrics {args.metrics}: not a port number")


async def start_metrics(args: argparse.Namespace, session: Any, handles: list[Any]) -> Any:
    """The ``--metrics`` endpoint (a ``swarm.metrics.MetricsServer``), or None without it;
    it reports the torrents in ``handles`` (a list the caller fills as they are added)."""
    if args.metrics is None:
        return None
    from swarm.metrics import MetricsServer

    server = MetricsServer(session, lambda: handles)
    await server.start(args.metrics_host, args.metrics)
    return server


#: Far above any real .torrent (10^6 pieces is 20 MB); stops us reading a disk image by mistake.
MAX_TORRENT_FILE = 64 * 1024 * 1024


def load_torrent(path: str) -> Metainfo:
    """Read and parse a .torrent; every failure is ``BadInput`` whose message starts with ``path``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_TORRENT_FILE + 1)
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory, not a .torrent file") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None
    if len(data) > MAX_TORRENT_FILE:
        raise MetainfoError(f"{path}: larger than {MAX_TORRENT_FILE} bytes; not a .torrent")
    try:
        return parse_metainfo(data)
    except MetainfoError as exc:
        raise MetainfoError(f"{path}: {exc}") from None


def not_implemented(name: str) -> int:
    from swarm.errors import SwarmError

    raise SwarmError(f"'{name}' is not implemented yet")


def discovery_options(args: argparse.Namespace) -> dict[str, object]:
    """Session keyword arguments from --no-dht/--no-lsd/--dht-bootstrap (and --encryption).

    The command line turns DHT and LSD on (the Session API keeps them off);
    a bad --dht-bootstrap is BadInput (exit 2). The DHT routing table lives in
    ``swarm.discovery.default_state_dir()``.
    """
    from swarm.core.dht.policy import parse_hostport
    from swarm.discovery import default_state_dir
    from swarm.errors import BadInput

    bootstrap = []
    for text in getattr(args, "dht_bootstrap", None) or []:
        try:
            bootstrap.append(parse_hostport(text))
        except BadInput as exc:
            raise BadInput(f"--dht-bootstrap {text}: {exc}") from exc
    return {
        "enable_dht": not getattr(args, "no_dht", False),
        "enable_lsd": not getattr(args, "no_lsd", False),
        "dht_bootstrap": bootstrap or None,
        "state_dir": default_state_dir(),
        "encryption": getattr(args, "encryption", "prefer"),
    }
