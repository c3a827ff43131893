"""Run a command under a pseudo-terminal and collect what it drew.

Used by test_pty.py for the live reporter; point it at a real command once
the engine lands, e.g.::

    res = run_in_pty([sys.executable, "-m", "swarm", "get", str(torrent), "-o", str(out),
                      "--peer", f"127.0.0.1:{port}", "--port", "0", "--host", "127.0.0.1"])
    assert res.returncode == 0 and "MiB/s" in res.text
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-_]")


@dataclass
class PtyResult:
    returncode: int
    raw: str  # everything written to the terminal, escapes included

    @property
    def text(self) -> str:
        """The output with escape sequences removed (what a person read, frames concatenated)."""
        return _ANSI.sub("", self.raw).replace("\r", "")


def run_in_pty(
    argv: Sequence[str],
    *,
    cols: int = 100,
    rows: int = 30,
    timeout: float = 30.0,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    until: Callable[[str], bool] | None = None,
    interrupt_after: float | None = None,
) -> PtyResult:
    """Run ``argv`` on a ``cols`` x ``rows`` pty; read until it exits (or ``timeout``: killed, error).

    ``until``: once it is true of the raw output so far, send SIGINT (Ctrl-C),
    e.g. to stop a seeder; ``interrupt_after`` does the same after a delay.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    full_env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "CI")}
    full_env.update({"TERM": "xterm-256color", "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(argv), stdin=slave, stdout=slave, stderr=slave, env=full_env, cwd=cwd, start_new_session=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    start = time.monotonic()
    deadline = start + timeout
    interrupted = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                proc.kill()
                proc.wait(5)
                raise TimeoutError(f"{argv[0]} did not finish within {timeout}s; output:\n{b''.join(chunks)[-3000:]!r}")
            ready, _, _ = select.select([master], [], [], min(left, 0.1))
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child side is closed
                    break
                if not data:
                    break
                chunks.append(data)
            if not interrupted and (
                (until is not None and until(b"".join(chunks).decode("utf-8", "replace")))
                or (interrupt_after is not None and time.monotonic() - start >= interrupt_after)
            ):
                proc.send_signal(signal.SIGINT)
                interrupted = True
        rc = proc.wait(max(0.1, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    return PtyResult(rc, b"".join(chunks).decode("utf-8", "replace"))
