"""Options shared by several commands, so they are spelled the same everywhere."""

from __future__ import annotations

import argparse

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


def add_network_options(p: argparse.ArgumentParser, default_port: int = 6881) -> None:
    p.add_argument(
        "--port", type=int, default=default_port, help=f"peer port (default {default_port}; 0 = any free port)"
    )
    p.add_argument("--host", default="0.0.0.0", help="address to bind (default all interfaces)")
    p.add_argument(
        "--encryption",
        choices=["prefer", "require", "off"],
        default="prefer",
        help="protocol encryption (MSE/PE): prefer (default: try it, accept both), "
        "require (RC4 only, both ways), off (plain only)",
    )


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
