"""The CLI lifts the soft open-file limit (a tracker holds a socket per client)."""

from __future__ import annotations

import resource

from swarm.cli import raise_fd_limit


def test_soft_open_file_limit_is_raised_towards_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
        raise_fd_limit(cap=4096)
        expected = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (max(256, expected), hard)
        raise_fd_limit(cap=300)  # never lowers what is already there
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == max(256, expected)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
