"""swarm.core.webseed: BEP 19 URLs, Range plans, scope and backoff (pure)."""

from __future__ import annotations

import pytest

from swarm.core.layout import Layout
from swarm.core.metainfo import FileEntry
from swarm.core.webseed import (
    GRACE,
    MAX_RUN,
    MIN_RUN,
    Backoff,
    Fetch,
    check_url,
    file_url,
    plan_fetch,
    run_bytes,
    runs,
    web_seed_scope,
)
from swarm.errors import BadInput


def test_single_file_url_is_the_file_unless_it_ends_in_a_slash() -> None:
    assert file_url("http://h/x/file.iso", ("file.iso",), False) == "http://h/x/file.iso"
    assert file_url("http://h/x/", ("my file#1.iso",), False) == "http://h/x/my%20file%231.iso"


def test_multi_file_url_appends_name_and_path_percent_encoded() -> None:
    path = ("my tree", "sub dir", "b?.bin")
    assert file_url("http://h/d/", path, True) == "http://h/d/my%20tree/sub%20dir/b%3F.bin"
    assert file_url("http://h/d", path, True) == "http://h/d/my%20tree/sub%20dir/b%3F.bin"
    assert file_url("http://h/", ("t", "é/ü"), True) == "http://h/t/%C3%A9%2F%C3%BC"


def test_check_url() -> None:
    assert check_url("https://h/x") == "https://h/x"
    for bad in ("ftp://h/x", "http:///x", "/local/path", ""):
        with pytest.raises(BadInput):
            check_url(bad)


def test_a_run_spanning_files_is_fetched_per_file_and_pads_are_not_fetched() -> None:
    files = [
        FileEntry(("t", "a"), 10, 0),
        FileEntry(("t", ".pad", "6"), 6, 10, pad=True),
        FileEntry(("t", "empty"), 0, 16),
        FileEntry(("t", "b"), 20, 16),
    ]
    layout = Layout(files, 8, 36)
    plan = plan_fetch(layout, "http://h/", True, 4, 30)
    assert plan == [
        Fetch("http://h/t/a", 4, 6, 4),
        Fetch(None, 0, 6, 10),
        Fetch("http://h/t/b", 0, 18, 16),
    ]


def test_blocks_merge_into_contiguous_runs() -> None:
    blocks = [(1, 0, 4), (0, 4, 4), (0, 0, 4), (3, 0, 2)]
    assert runs(blocks, 8) == [(0, 12), (24, 2)]
    assert runs([], 8) == []


def test_scope_prefers_peers() -> None:
    avail = [0, 2, 0, 1].__getitem__
    assert web_seed_scope(4, avail, peers_serving=0) is None  # nobody serves: anything
    assert web_seed_scope(4, avail, peers_serving=1) == [True, False, True, False]
    # peers still connecting: wait a little for them, then take anything
    assert web_seed_scope(4, avail, 0, peers_pending=2, waited=0.5) == [False] * 4
    assert web_seed_scope(4, avail, 0, peers_pending=2, waited=GRACE) is None


def test_run_size_follows_the_rate() -> None:
    assert run_bytes(0.0, 16384) == MIN_RUN
    assert run_bytes(0.0, 16 * 1024 * 1024) == 16 * 1024 * 1024  # at least a piece
    assert run_bytes(1e12, 16384) == MAX_RUN
    assert MIN_RUN < run_bytes(512 * 1024, 16384) < MAX_RUN


def test_backoff_doubles_then_drops_and_bad_data_is_never_forgiven() -> None:
    b = Backoff(max_failures=3, base=1.0)
    assert b.ready(0.0)
    assert b.failed(10.0) == 1.0
    assert not b.ready(10.5) and b.ready(11.0)
    assert b.failed(11.0) == 2.0
    b.succeeded()
    assert b.failed(20.0) == 1.0  # transport failures forgiven by a good answer
    b = Backoff(max_failures=2, base=1.0)
    assert b.failed(0.0, bad_data=True) == 1.0
    b.succeeded()
    assert b.failed(5.0, bad_data=True) is None  # a liar stays a liar
    assert b.dropped and not b.ready(100.0)


def test_backoff_is_capped() -> None:
    b = Backoff(max_failures=100, base=1.0, cap=5.0)
    delays = [b.failed(0.0) for _ in range(6)]
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
