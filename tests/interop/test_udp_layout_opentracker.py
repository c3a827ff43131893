"""Our UDP tracker's answers against opentracker's, byte layout for byte layout (BEP 15):
the same requests to both, the same sizes, fields and peers back."""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_opentracker import opentracker

from swarm.core import announce as a

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
IH = bytes.fromhex("5b" * 20)


@pytest.fixture
def swarm_tracker() -> Iterator[int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "swarm", "tracker", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert line.startswith("tracker listening on"), line
        yield int(line.rsplit(":", 1)[1])
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)


def exchange(port: int) -> list[bytes]:
    """connect, a seed's announce, a leecher's announce (another socket), a scrape:
    the raw answers."""
    out = []
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    try:
        for s in socks:
            s.settimeout(5)
            s.connect(("127.0.0.1", port))

        def ask(s: socket.socket, pkt: bytes) -> bytes:
            s.send(pkt)
            answer = s.recv(4096)
            out.append(answer)
            return answer

        cids = [
            a.udp_parse_connect(ask(s, a.udp_connect_request(11 + i)), 11 + i)
            for i, s in enumerate(socks)
        ]
        ask(
            socks[0],
            a.udp_announce_request(
                cids[0], 21, IH, b"-SW0001-seedseedseed", 0, 0, 0, "started", 5, 50, 7001
            ),
        )
        ask(
            socks[1],
            a.udp_announce_request(
                cids[1], 22, IH, b"-SW0001-leechleechle", 0, 99, 0, "started", 6, 50, 7002
            ),
        )
        ask(socks[1], a.udp_scrape_request(cids[1], 23, [IH]))
    finally:
        for s in socks:
            s.close()
    return out


def peers(answer: bytes) -> set[bytes]:
    assert (len(answer) - 20) % 6 == 0
    return {answer[i : i + 6] for i in range(20, len(answer), 6)}


def test_answers_have_opentrackers_layout(tmp_path: Path, swarm_tracker: int) -> None:
    with opentracker(tmp_path, [IH]) as ot_port:
        theirs = exchange(ot_port)
    ours = exchange(swarm_tracker)
    assert [len(x) for x in ours[:2]] == [len(x) for x in theirs[:2]] == [16, 16]
    for mine, ot in zip(ours, theirs, strict=True):
        assert mine[:8] == ot[:8]  # action and transaction id
    seed = socket.inet_aton("127.0.0.1") + struct.pack(">H", 7001)
    leech = socket.inet_aton("127.0.0.1") + struct.pack(">H", 7002)
    # announces: 20 bytes, then 6 a peer; the interval is configuration, leechers and
    # seeders match; opentracker also lists the asker itself, we never do
    for i, asker in ((2, seed), (3, leech)):
        assert ours[i][12:20] == theirs[i][12:20], (ours[i].hex(), theirs[i].hex())
        assert peers(ours[i]) == peers(theirs[i]) - {asker}
    assert peers(ours[3]) == {seed}
    assert ours[4] == theirs[4]  # scrape: seeders 1, completed 0, leechers 1
