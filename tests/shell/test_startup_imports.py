"""Start-up cost of `swarm get` / `swarm seed`: the HTTP client stack is imported
only when a web seed or an HTTP tracker needs it (issue 17: on loopback, a
start-up is part of the measured transfer; aiohttp alone was ~0.1-0.15 CPU-s)."""

from __future__ import annotations

import subprocess
import sys


def test_engine_modules_do_not_import_aiohttp() -> None:
    code = (
        "import sys, swarm.cli.get, swarm.cli.seed, swarm.session, swarm.torrent; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiohttp'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"
