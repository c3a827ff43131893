"""`swarm info`: placeholder until its issue lands."""

from __future__ import annotations

import argparse

from .common import add_output_options, not_implemented


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("info", help="(not implemented yet)")
    add_output_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return not_implemented("info")
