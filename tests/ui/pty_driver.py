"""Drives the live reporter for about a second with a changing fake snapshot (run by test_pty.py)."""

from __future__ import annotations

import sys
import time

from swarm.status import PeerStatus, TorrentStatus, TrackerStatus
from swarm.ui import choose_mode, events, make_reporter

MiB = 1024 * 1024


def snapshot(i: int, n: int) -> TorrentStatus:
    total = 64 * MiB
    done = total * i // n
    pieces = 64
    have = pieces * i // n
    peers = tuple(
        PeerStatus(f"127.0.0.{k}:{6881 + k}", "libtorrent 2.1.1", False, True, False, True, False,
                   (k + 1) * 1.5 * MiB, 0.0, 0, 0, 1.0 if k == 0 else 0.5)
        for k in range(3)
    )
    return TorrentStatus(
        info_hash="0123456789abcdef0123456789abcdef01234567", name="pty-demo.bin",
        state="downloading" if i < n else "seeding", total_size=total, verified=done,
        num_pieces=pieces, piece_length=MiB, down_rate=9.0 * MiB, up_rate=0.5 * MiB,
        downloaded=done, uploaded=0, peers=peers,
        trackers=(TrackerStatus("http://127.0.0.1:6969/announce", "ok", time.time(), time.time() + 60, None, 3),),
        piece_map="#" * have + "+" * min(2, pieces - have) + "." * max(0, pieces - have - 2),
        seeds=1, eta=(n - i) * 0.05, started_at=START,
    )


START = time.time()


def main() -> int:
    mode = choose_mode(json=False, quiet=False, isatty=sys.stdout.isatty())
    if mode != "live":
        print(f"expected live mode on a pty, got {mode}", file=sys.stderr)
        return 3
    rep = make_reporter(mode, refresh_per_second=10)
    n = 20
    rep.start(snapshot(0, n))
    rep.event(events.PEER, action="connected", address="127.0.0.1:6881", client="libtorrent 2.1.1")
    for i in range(1, n + 1):
        time.sleep(0.05)  # pacing a demo, not synchronisation
        rep.update(snapshot(i, n))
    if "--no-close" in sys.argv:
        return 0  # forgets close(): the cursor must come back anyway
    rep.event(events.DONE)
    rep.close(snapshot(n, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
