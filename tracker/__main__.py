"""``python -m tracker`` / ``swarm-tracker``: the same as ``swarm tracker``."""

from __future__ import annotations

import sys


def main() -> None:
    from swarm.cli import main as swarm_main

    sys.exit(swarm_main(["tracker", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
