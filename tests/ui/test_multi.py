"""The table of `swarm seed A B C` on a terminal: a row per torrent and a totals row."""

from __future__ import annotations

import io
import json

from swarm.status import TorrentStatus
from swarm.ui.multi import MultiReporter, table_lines


def _status(name: str, ih: str, size: int, up: float) -> TorrentStatus:
    return TorrentStatus(
        info_hash=ih * 40, name=name, state="seeding", total_size=size, verified=size,
        num_pieces=1, piece_length=size, down_rate=0.0, up_rate=up, downloaded=0, uploaded=0,
    )


def test_rows_and_totals_fit_the_width() -> None:
    statuses = [_status("a.iso", "a", 1024, 100.0), _status("b\x1b[2J.iso", "b", 2048, 50.0)]
    assert all(len(r) <= 60 for r in table_lines(statuses, 60))
    rows = table_lines(statuses, 100)
    assert len(rows) == 4 and all(len(r) <= 100 for r in rows)
    assert rows[1].startswith("a.iso") and "\x1b" not in rows[2]
    assert rows[3].startswith("total (2 torrents)") and "3.0 KiB" in rows[3] and "150 B/s" in rows[3]


def test_json_events_carry_their_own_info_hash() -> None:
    out = io.StringIO()
    rep = MultiReporter("json", stream=out, clock=lambda: 1.0)
    a, b = _status("a", "a", 10, 0.0), _status("b", "b", 20, 0.0)
    rep.start(a)
    rep.start(b)
    rep.event(None, "listening", host="127.0.0.1", port=1)
    rep.event(b.info_hash, "peer", action="connected", address="1.2.3.4:5")
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["info_hash"]) for e in events] == [
        ("added", a.info_hash), ("added", b.info_hash), ("listening", None), ("peer", b.info_hash)
    ]
