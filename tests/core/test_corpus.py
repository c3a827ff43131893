"""libtorrent's own parser test torrents, one case per row of EXPECTED.tsv
(rules in shared/corpus/README.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import IN_CI

from swarm.core.metainfo import Metainfo, parse_metainfo
from swarm.errors import MetainfoError

CORPUS = (
    Path(__file__).resolve().parents[2] / ".." / "shared" / "corpus" / "libtorrent-test-torrents"
)
EXPECTED = CORPUS / "EXPECTED.tsv"


def _rows() -> list[dict[str, str]]:
    if not EXPECTED.is_file():
        return []
    with EXPECTED.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))


ROWS = _rows()


def test_corpus_present() -> None:
    if not ROWS:
        if IN_CI:
            pytest.fail(f"corpus missing: {EXPECTED}")
        pytest.skip(f"corpus missing: {EXPECTED}")
    assert len(ROWS) == 108


def _no_path_twice(meta: Metainfo) -> None:
    paths = [f.path for f in meta.files if not f.pad]
    assert len(paths) == len(set(paths)), "two files share one path"
    for f in meta.files:
        for part in f.path:
            assert part not in ("", ".", "..") and "/" not in part and "\\" not in part
            assert "\x00" not in part


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_corpus_row(row: dict[str, str]) -> None:
    data = (CORPUS / row["file"]).read_bytes()
    if row["expect"] == "ok" and row["version"] in ("v1", "hybrid"):
        meta = parse_metainfo(data)
        assert meta.info_hash.hex() == row["info_hash_v1"]
        _no_path_twice(meta)
        assert meta.num_pieces * meta.piece_length >= meta.total_length
    elif row["expect"] == "ok":  # v2-only: parse, or refuse clearly
        with pytest.raises(MetainfoError, match="v2-only torrents are not supported"):
            parse_metainfo(data)
    else:
        with pytest.raises(MetainfoError) as info:
            parse_metainfo(data)
        assert str(info.value)
