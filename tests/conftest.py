"""Shared test helpers."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, settings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

# CLI runs (in-process or subprocesses, whose env is often copied at import)
# keep their state (DHT table, seeds' resume files) out of ~/.local/state.
if "SWARM_STATE_DIR" not in os.environ:
    os.environ["SWARM_STATE_DIR"] = tempfile.mkdtemp(prefix="swarm-test-state-")
    atexit.register(shutil.rmtree, os.environ["SWARM_STATE_DIR"], True)


# Shared machines are noisy: no per-example deadlines. In CI, examples are
# derived from the test names so a red run can be reproduced exactly.
settings.register_profile("dev", deadline=None)
settings.register_profile(
    "ci", deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if IN_CI else "dev")


def require_tool(name: str) -> str:
    """Path of an external tool; in CI a missing tool fails the test instead of skipping."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (scripts/setup.sh should install it)")
        pytest.skip(f"{name} is not installed")
    return path


def require_libtorrent():  # type: ignore[no-untyped-def]
    try:
        import libtorrent
    except ImportError:
        if IN_CI:
            pytest.fail("libtorrent Python bindings are not installed")
        pytest.skip("libtorrent is not installed")
    return libtorrent

