"""libtorrent's own parser test torrents, one case per row of EXPECTED.tsv
(rules in shared/corpus/README.md)."""

from __future__ import annotations

import csv
import hashlib
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

#: libtorrent 2.0.8 (the README's reference) loads these, 2.0.9 and later
#: (2.1.1 is installed here) refuse them: a piece layer that does not hash up
#: to its file's root, or that belongs to no file. So do we.
REFUSED_SINCE_2_0_9 = {
    "v2_invalid_piece_layer_root.torrent",
    "v2_unknown_piece_layer_entry.torrent",
    "v2_invalid_root_hash.torrent",
}


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
    if row["file"] in REFUSED_SINCE_2_0_9:
        with pytest.raises(MetainfoError, match="piece layer"):
            parse_metainfo(data)
    elif row["expect"] == "ok":
        meta = parse_metainfo(data)
        if row["version"] == "v2":
            assert meta.version == 2 and meta.pieces == b""
            assert meta.info_hash == meta.info_hash_v2[:20]  # type: ignore[index]
        else:
            assert meta.info_hash.hex() == row["info_hash_v1"]
            assert meta.version == (1 if row["version"] == "v1" else "hybrid")
        if meta.info_hash_v2 is not None:
            assert meta.info_hash_v2 == hashlib.sha256(meta.info_bytes).digest()
            assert all(f.pieces_root for f in meta.files if f.length and not f.pad and not f.symlink)
            assert all(f.offset % meta.piece_length == 0 for f in meta.files if f.length and not f.pad)
        _no_path_twice(meta)
        assert meta.num_pieces * meta.piece_length >= meta.total_length
    else:
        with pytest.raises(MetainfoError) as info:
            parse_metainfo(data)
        assert str(info.value)
