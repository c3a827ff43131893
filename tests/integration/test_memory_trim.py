"""Freed block buffers go back to the OS (swarm.memory): an idle seed returns to its baseline."""

from __future__ import annotations

import os
import threading

import pytest

from swarm import memory


def _rss_anon_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


@pytest.mark.skipif(memory._trim is None, reason="not glibc: nothing to trim")  # noqa: SLF001
def test_freed_block_buffers_churned_in_threads_are_given_back() -> None:
    kept: list[list[bytes]] = []

    def churn() -> None:  # as storage reads: 16 KiB blocks made and freed in worker threads
        blocks = [os.urandom(16384) for _ in range(3000)]
        kept.append(blocks[::64])  # a few survive, pinning their arenas as live buffers do
        del blocks

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    before = _rss_anon_kib()
    assert memory.release_free_memory()
    after = _rss_anon_kib()
    # 4 x 3000 x 16 KiB = 188 MiB was freed; glibc held most of it until the trim
    assert before - after > 64 * 1024, (before, after)
