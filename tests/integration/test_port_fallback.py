"""Port fallback (issue 23): without --port a taken peer port moves on to the next of the
default range, then to any free port, and `listening` says which; an explicit taken
--port N is an error. The default range is injected with SWARM_PEER_PORTS so the test
never depends on 6881 being free."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

from tests.helpers.procs import ENV, SWARM, stop_process

QUIET = ("--host", "127.0.0.1", "--no-dht", "--no-lsd")


def _listener(port: int = 0) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _two_adjacent_ports() -> tuple[socket.socket, int]:
    """A listening socket on P and P + 1 known free (retried until such a pair is found)."""
    for _ in range(50):
        taken = _listener()
        port = taken.getsockname()[1]
        try:
            probe = _listener(port + 1)
        except OSError:
            taken.close()
            continue
        probe.close()
        return taken, port
    raise AssertionError("no two adjacent free ports")


def _payload(tmp_path: Path) -> Path:
    f = tmp_path / "a.bin"
    f.write_bytes(b"x" * 40_000)
    return f


def test_taken_default_port_moves_to_the_next(tmp_path: Path) -> None:
    taken, port = _two_adjacent_ports()
    with taken:
        env = {**ENV, "SWARM_PEER_PORTS": f"{port}-{port + 1}"}
        proc, bound, _ = _seed(tmp_path, env)
        try:
            assert bound == port + 1
        finally:
            stop_process(proc)


def test_taken_range_moves_to_any_free_port(tmp_path: Path) -> None:
    with _listener() as taken:
        port = taken.getsockname()[1]
        proc, bound, events = _seed(tmp_path, {**ENV, "SWARM_PEER_PORTS": f"{port}-{port}"})
        try:
            assert bound not in (0, port)
            listening = [e for e in events if e["event"] == "listening"][0]
            assert listening["requested_port"] == port
        finally:
            stop_process(proc)


def test_explicit_taken_port_is_an_error(tmp_path: Path) -> None:
    with _listener() as taken:
        port = taken.getsockname()[1]
        r = subprocess.run(
            [*SWARM, "seed", str(_payload(tmp_path)), "--port", str(port), *QUIET],
            cwd=tmp_path, capture_output=True, text=True, timeout=30, env=ENV,
        )
    assert r.returncode == 1, r.stderr
    assert f"{port}" in r.stderr and "Traceback" not in r.stderr


def _seed(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], int, list[dict[str, object]]]:
    proc = subprocess.Popen(
        [*SWARM, "seed", str(_payload(tmp_path)), "--json", *QUIET],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stdout is not None
    events: list[dict[str, object]] = []
    for line in proc.stdout:  # ends at EOF if the seed dies; pytest-timeout bounds the rest
        events.append(json.loads(line))
        if events[-1]["event"] == "listening":
            return proc, int(events[-1]["port"]), events  # type: ignore[call-overload]
    proc.kill()
    raise AssertionError(f"seed never listened: {proc.stderr.read() if proc.stderr else ''}")


def test_bad_port_range_override_is_bad_usage(tmp_path: Path) -> None:
    for value in ("abc", "7000-6000", "0-5"):
        r = subprocess.run(
            [*SWARM, "seed", str(_payload(tmp_path)), *QUIET],
            cwd=tmp_path, capture_output=True, text=True, timeout=30, env={**ENV, "SWARM_PEER_PORTS": value},
        )
        assert r.returncode == 2 and "SWARM_PEER_PORTS" in r.stderr and "Traceback" not in r.stderr, value
