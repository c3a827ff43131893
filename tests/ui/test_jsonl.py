"""--json: every line parses, carries the documented fields, and the doc matches events.py."""

from __future__ import annotations

import asyncio
import io
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ui_snapshots import HASH, NOW, FakeClock, status

from swarm.ui import events as ev
from swarm.ui import make_reporter
from swarm.ui.jsonl import JsonReporter, dumps

DOC = Path(__file__).resolve().parents[2] / "docs" / "json-events.md"


def lines(buf: io.StringIO) -> list[dict[str, object]]:
    out = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert all(isinstance(o, dict) for o in out)
    return out


def doc_sections() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### `([a-z_]+)`\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_doc_lists_exactly_the_event_kinds_in_order() -> None:
    assert tuple(doc_sections()) == ev.EVENT_KINDS


def test_doc_is_marked_stable() -> None:
    assert "stable" in DOC.read_text(encoding="utf-8").split("\n## ")[0].lower()


@pytest.mark.parametrize("kind", ev.EVENT_KINDS)
def test_doc_fields_match_schema(kind: str) -> None:
    body = doc_sections()[kind]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| ([a-z ]+) \| (yes|no) \|", body, flags=re.M)
    documented = [(name, tuple(types.split(" or ")), req == "yes") for name, types, req in rows]
    assert documented == [(f.name, f.types, f.required) for f in ev.EVENTS[kind]]


@pytest.mark.parametrize("kind", ev.EVENT_KINDS)
def test_doc_example_conforms(kind: str) -> None:
    examples = re.findall(r"```json\n(.*?)\n```", doc_sections()[kind], flags=re.S)
    assert len(examples) == 1
    obj = json.loads(examples[0])
    assert obj["event"] == kind
    assert ev.validate(obj) == []


def test_validate_catches_problems() -> None:
    assert ev.validate({"event": "nope"}) == ["unknown event kind 'nope'"]
    good = {"event": "stalled", "time": 1.0, "info_hash": HASH, "reason": "x"}
    assert ev.validate(good) == []
    assert ev.validate({**good, "extra": 1}) == []  # additive schema
    assert ev.validate({k: v for k, v in good.items() if k != "reason"}) == ["stalled: missing field 'reason'"]
    assert "want number" in ev.validate({**good, "time": "now"})[0]
    bad_choice = {"event": "peer", "time": 1.0, "info_hash": HASH, "action": "waved", "address": "a:1"}
    assert "not one of" in ev.validate(bad_choice)[0]
    assert ev.validate({**good, "time": True}) != []  # a bool is not a number


#: What the engine passes for each kind it emits itself (from the brief's contract).
ENGINE_EVENTS: dict[str, dict[str, object]] = {
    ev.LISTENING: {"host": "127.0.0.1", "port": 6881},
    ev.METADATA: {"peer": "127.0.0.1:6882"},  # the rest is filled from the snapshot
    ev.PEER: {"action": "connected", "address": "127.0.0.1:6882", "client": "libtorrent 2.1.1", "source": "tracker"},
    ev.TRACKER: {"action": "error", "url": "http://127.0.0.1:1/announce", "error": "connection refused"},
    ev.PIECE: {"action": "failed", "index": 17, "peer": "127.0.0.1:6882"},
    ev.WEB_SEED: {"action": "failed", "url": "http://127.0.0.1:1/", "reason": "HTTP 500", "retry_in": 2.0},
    ev.STALLED: {},  # reason filled from the snapshot
    ev.DONE: {"path": "/tmp/x"},
    ev.ERROR: {"message": "disk full"},  # fatal defaults to false
}


def test_every_documented_kind_is_emitted_correctly() -> None:
    buf, clock = io.StringIO(), FakeClock()
    rep = make_reporter("json", stream=buf, clock=clock)
    s = status(stalled_reason="no peer has piece 3")
    rep.start(s, magnet="magnet:?xt=urn:btih:" + HASH, path="/tmp")
    for kind, fields in ENGINE_EVENTS.items():
        clock.advance(0.5)
        rep.update(s)
        rep.event(kind, **fields)
    rep.close(s)
    objs = lines(buf)
    assert {o["event"] for o in objs} == set(ev.EVENT_KINDS) - {ev.INFO}  # info: `swarm info` only
    for o in objs:
        assert ev.validate(o) == [], o
        assert o["info_hash"] == HASH
        assert isinstance(o["time"], float)
    assert objs[0]["event"] == "added" and objs[0]["magnet"] == "magnet:?xt=urn:btih:" + HASH
    assert objs[-1]["event"] == "summary" and objs[-1]["complete"] is False
    by_kind = {o["event"]: o for o in objs}
    assert by_kind["stalled"]["reason"] == "no peer has piece 3"
    assert by_kind["error"]["fatal"] is False
    assert by_kind["metadata"]["num_pieces"] == 1060
    assert by_kind["done"]["elapsed"] == pytest.approx(10 + 0.5 * (list(ENGINE_EVENTS).index(ev.DONE) + 1))


def test_progress_is_throttled_to_the_interval_and_on_state_change() -> None:
    buf, clock = io.StringIO(), FakeClock()
    rep = JsonReporter(stream=buf, clock=clock, interval=1.0)
    rep.start(status())
    for _ in range(9):  # 10 Hz for 0.9 s: nothing yet
        clock.advance(0.1)
        rep.update(status())
    assert [o["event"] for o in lines(buf)] == ["added"]
    clock.advance(0.1)
    rep.update(status(verified=200 * 1024 * 1024))
    clock.advance(0.1)
    rep.update(status(state="seeding"))  # state change: at once
    objs = lines(buf)
    assert [o["event"] for o in objs] == ["added", "progress", "progress"]
    assert objs[1]["verified"] == 200 * 1024 * 1024
    assert objs[1]["time"] == pytest.approx(NOW + 1.0)
    assert objs[2]["state"] == "seeding"
    assert objs[1]["peers"] == 4 and objs[1]["seeds"] == 1 and objs[1]["eta"] == 3.2


def test_non_json_values_do_not_break_the_stream() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.start(status(down_rate=math.nan, eta=math.inf))
    rep.event(ev.ERROR, message="x", blob=b"\x01\x02", where=Path("/tmp"), rate=math.inf, nested={"a": math.nan})
    rep.update(status(down_rate=math.nan, eta=math.inf, state="seeding"))
    objs = lines(buf)  # json.loads would accept NaN; check the text too
    assert "NaN" not in buf.getvalue() and "Infinity" not in buf.getvalue()
    err = objs[1]
    assert err["blob"] == "0102" and err["where"] == "/tmp" and err["rate"] is None and err["nested"] == {"a": None}
    assert objs[2]["down_rate"] is None and objs[2]["eta"] is None


def test_event_before_start_has_null_info_hash() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.event(ev.ERROR, message="bad magnet", fatal=True)
    (obj,) = lines(buf)
    assert obj["info_hash"] is None and ev.validate(obj) == []


def test_engine_fields_cannot_overwrite_the_envelope() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.start(status())
    rep.event(ev.STALLED, reason="x", event="spoof", time="t", info_hash="y")
    obj = lines(buf)[-1]
    assert obj["event"] == "stalled" and obj["time"] == NOW and obj["info_hash"] == HASH


@given(st.dictionaries(st.text(max_size=8), st.none() | st.booleans() | st.integers() | st.floats() | st.binary(max_size=8) | st.text(max_size=8), max_size=6))
def test_dumps_always_gives_one_strict_json_line(fields: dict[str, object]) -> None:
    line = dumps({"event": "x", **fields})
    assert "\n" not in line
    json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard constant {c}"))


def test_none_for_a_non_nullable_optional_field_is_left_out() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.start(status())
    rep.event(ev.PEER, action="disconnected", address="127.0.0.1:1", reason=None, client=None)
    rep.event(ev.TRACKER, action="ok", url="http://t/announce", seeders=None, peers=0)
    peer_obj, tracker_obj = lines(buf)[1:]
    assert "reason" not in peer_obj and "client" not in peer_obj
    assert tracker_obj["seeders"] is None  # nullable: kept
    assert ev.validate(peer_obj) == [] and ev.validate(tracker_obj) == []


def test_progress_is_zero_while_fetching_metadata() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.start(status(state="metadata", total_size=0, verified=0, num_pieces=0, piece_length=0))
    rep.close()
    progress = [o for o in lines(buf) if o["event"] == "progress"]
    assert progress and progress[0]["progress"] == 0.0


def test_swarm_info_json_conforms(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from swarm.cli import main

    (tmp_path / "a.bin").write_bytes(b"x" * 40000)
    torrent = tmp_path / "a.torrent"
    assert main(["create", str(tmp_path / "a.bin"), "-o", str(torrent), "-q"]) == 0
    capsys.readouterr()
    assert main(["info", str(torrent), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    obj = json.loads(line)
    assert obj["event"] == "info" and obj["size"] == 40000
    assert ev.validate(obj) == []


@given(
    st.dictionaries(
        st.sampled_from(["event", "time", "info_hash", "action", "address", "index", "files", "x"]),
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
        | st.lists(st.integers(), max_size=3) | st.sampled_from(list(ev.EVENT_KINDS)),
        max_size=8,
    )
)
def test_validate_never_raises(obj: dict[str, object]) -> None:
    problems = ev.validate(obj)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    if not isinstance(obj.get("event"), str) or obj.get("event") not in ev.EVENTS:
        assert problems


def test_stalled_event_derived_once_unless_the_engine_sent_it() -> None:
    buf, clock = io.StringIO(), FakeClock()
    rep = JsonReporter(stream=buf, clock=clock)
    rep.start(status())
    for _ in range(4 * 20):
        clock.advance(0.25)
        rep.update(status(stalled_reason="no peers"))
    stalls = [o for o in lines(buf) if o["event"] == "stalled"]
    assert len(stalls) == 1 and stalls[0]["reason"] == "no peers" and stalls[0]["time"] == NOW + 10.25  # first stalled snapshot at +0.25 s
    assert ev.validate(stalls[0]) == []
    rep.event(ev.STALLED, reason="disk full")  # the engine's own
    for _ in range(4 * 20):
        clock.advance(0.25)
        rep.update(status(stalled_reason="disk full"))
    assert [o["reason"] for o in lines(buf) if o["event"] == "stalled"] == ["no peers", "disk full"]


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_piece_lines_are_not_flushed_one_by_one_but_reach_the_stream_with_the_next_event() -> None:
    out = _CountingStream()
    rep = JsonReporter(stream=out, clock=FakeClock(NOW))
    rep.start(status())
    before = out.flushes
    for i in range(500):
        rep.event(ev.PIECE, action="verified", index=i)
    assert out.flushes - before <= 2  # a burst of piece lines costs at most a flush or two
    rep.event(ev.DONE)
    assert out.flushes > before
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["index"] for o in lines if o["event"] == "piece"] == list(range(500))
    assert lines[-1]["event"] == "done"


async def test_progress_counts_the_live_asyncio_tasks_for_leak_watching() -> None:
    buf = io.StringIO()
    rep = JsonReporter(stream=buf, clock=FakeClock())
    rep.start(status())
    rep.close(status())
    progress = [o for o in lines(buf) if o["event"] == "progress"][-1]
    assert progress["tasks"] == len(asyncio.all_tasks()) >= 1
    assert ev.validate(progress) == []


def test_progress_counts_the_wasted_bytes() -> None:
    """Issue 17: received bytes that were never requested or arrived twice (endgame) are visible."""
    buf, clock = io.StringIO(), FakeClock()
    rep = JsonReporter(stream=buf, clock=clock, interval=1.0)
    rep.start(status())
    clock.advance(1.0)
    rep.update(status(extra={"wasted": 49152}))
    progress = lines(buf)[-1]
    assert progress["event"] == "progress" and progress["wasted"] == 49152
    assert ev.validate(progress) == []
