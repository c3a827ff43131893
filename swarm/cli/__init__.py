"""Command-line entry point: ``swarm COMMAND ...`` (reference: docs/cli.md).

Each command lives in its own module exposing ``register(subparsers)`` and
``run(args) -> int``; this module only wires them together and turns our
exceptions into one line on stderr and the contract's exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from swarm import __version__
from swarm.errors import BadInput, SwarmError

from . import check, create, daemon, get, info, remote, seed, tracker

COMMANDS = (create, info, seed, get, check, tracker, daemon, remote)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm",
        description="A BitTorrent client and LAN tracker.",
        epilog="Run 'swarm COMMAND --help' for a command's options and examples.",
    )
    parser.add_argument("--version", action="version", version=f"swarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def error_line(message: str) -> None:
    """One line on stderr, coloured when stderr is a terminal."""
    if sys.stderr.isatty():
        sys.stderr.write(f"\x1b[1;31mswarm: error:\x1b[0m {message}\n")
    else:
        sys.stderr.write(f"swarm: error: {message}\n")
    sys.stderr.flush()


def raise_fd_limit(cap: int = 65536) -> None:
    """Lift the soft open-file limit towards the hard one: a tracker holds one
    socket per client and a seed one per peer, and many systems start processes
    at a soft 1,024 with a hard limit far above it."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ImportError, ValueError, OSError):
        pass  # not on this platform, or not allowed: keep what we were given


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    raise_fd_limit()
    level = getattr(args, "log_level", None) or ("ERROR" if getattr(args, "quiet", False) else "WARNING")
    logging.basicConfig(
        level=getattr(logging, str(level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except BadInput as exc:
        error_line(str(exc))
        return EXIT_USAGE
    except SwarmError as exc:
        error_line(str(exc))
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # A reader such as `head` went away: not an error worth a traceback.
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return EXIT_OK


def run() -> None:
    sys.exit(main())
