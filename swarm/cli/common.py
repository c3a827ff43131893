"""Options shared by several commands, so they are spelled the same everywhere."""

from __future__ import annotations

import argparse


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


def add_discovery_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-lsd", action="store_true", help="turn LAN multicast discovery off")
    p.add_argument("--no-dht", action="store_true", help="turn the DHT off")
    p.add_argument(
        "--dht-bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="a DHT node to bootstrap from (repeatable)",
    )


def not_implemented(name: str) -> int:
    from swarm.errors import SwarmError

    raise SwarmError(f"'{name}' is not implemented yet")
