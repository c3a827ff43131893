"""Metainfo (.torrent) model, BEP 3 v1 with BEP 12/19/27/47.

The data model is fixed here so that storage, the engine and the UI can be
built against it; parsing and validation fill it in.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a torrent, in the torrent's byte stream order.

    ``path`` holds sanitised components, relative to the download directory
    (for a multi-file torrent the first component is the torrent's name).
    """

    path: tuple[str, ...]
    length: int
    offset: int  # where the file starts in the concatenation of all files
    pad: bool = False  # BEP 47 padding file: never written to disk

    @property
    def end(self) -> int:
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Metainfo:
    info_hash: bytes  # SHA-1 of info_bytes (20 bytes)
    info_bytes: bytes  # the info dictionary exactly as it stands in the file
    name: str  # sanitised
    piece_length: int
    pieces: bytes  # concatenated 20-byte SHA-1 piece hashes
    total_length: int  # sum of all file lengths, padding included
    files: tuple[FileEntry, ...]
    multi_file: bool
    private: bool = False
    trackers: list[list[str]] = field(default_factory=list)  # BEP 12 tiers
    url_list: list[str] = field(default_factory=list)  # BEP 19 web seeds
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    warnings: list[str] = field(default_factory=list)  # what sanitising changed

    @property
    def num_pieces(self) -> int:
        return len(self.pieces) // 20

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    def piece_hash(self, index: int) -> bytes:
        return self.pieces[index * 20 : index * 20 + 20]

    def piece_size(self, index: int) -> int:
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length
