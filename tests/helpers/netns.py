"""Two network namespaces joined by a veth pair, for tests that need real interfaces.

Needs root and ``ip netns``: skips outside CI without them, fails in CI.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import pytest
from conftest import IN_CI, require_tool

_counter = iter(range(1000))


class NsPair(NamedTuple):
    ns_a: str
    ns_b: str
    dev_a: str
    dev_b: str


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@contextmanager
def two_namespaces(
    name: str,
    dev: str,
    addrs: tuple[str, str],
    *,
    multicast_route: bool = False,
    addrs6: Sequence[str] = (),
) -> Iterator[NsPair]:
    """Namespaces ``swarm-{name}-{tag}-a/-b`` with veth ends ``{dev}{tag}a/b``.

    Each end gets ``addrs[i]/24``, is set up along with ``lo``; with
    ``multicast_route`` 224.0.0.0/4 is routed over it; ``addrs6`` (one per
    end) are added as /64 with nodad. Both namespaces are deleted on exit.
    """
    require_tool("ip")
    if os.geteuid() != 0:
        if IN_CI:
            pytest.fail("netns test needs root in CI")
        pytest.skip("needs root for ip netns")
    tag = f"{os.getpid() % 100000}{next(_counter)}"
    ns_a, ns_b = f"swarm-{name}-{tag}-a", f"swarm-{name}-{tag}-b"
    dev_a, dev_b = f"{dev}{tag}a", f"{dev}{tag}b"
    try:
        ip("netns", "add", ns_a)
    except subprocess.CalledProcessError as exc:
        if IN_CI:
            pytest.fail(f"ip netns add failed: {exc.stderr!r}")
        pytest.skip(f"ip netns not permitted here: {exc.stderr!r}")
    try:
        ip("netns", "add", ns_b)
        ip("link", "add", dev_a, "type", "veth", "peer", "name", dev_b)
        ip("link", "set", dev_a, "netns", ns_a)
        ip("link", "set", dev_b, "netns", ns_b)
        for ns, d, addr in ((ns_a, dev_a, addrs[0]), (ns_b, dev_b, addrs[1])):
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", d)
            ip("-n", ns, "link", "set", d, "up")
            ip("-n", ns, "link", "set", "lo", "up")
            if multicast_route:
                ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", d)
        for ns, d, addr6 in zip((ns_a, ns_b), (dev_a, dev_b), addrs6, strict=False):
            ip("-n", ns, "-6", "addr", "add", f"{addr6}/64", "dev", d, "nodad")
        yield NsPair(ns_a, ns_b, dev_a, dev_b)
    finally:
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
