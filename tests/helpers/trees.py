"""Comparing a downloaded directory tree with its source, and getting one from a seed."""

from __future__ import annotations

from pathlib import Path

from swarm import Session
from swarm.core.metainfo import Metainfo
from swarm.status import TorrentStatus


def same_tree(a: Path, b: Path) -> bool:
    """The same files with the same bytes under ``a`` and ``b`` (``b``'s resume data aside)."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and ".swarm" not in p.parts)
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)


async def seed_then_get(data: bytes, meta: Metainfo, src_parent: Path, out: Path) -> tuple[TorrentStatus, TorrentStatus]:
    """Seed ``data`` from ``src_parent`` in one session and download it into ``out`` (made
    here) from another, on 127.0.0.1: the seed's and the leecher's status at the end."""
    out.mkdir()
    async with Session("127.0.0.1", 0) as seed_s, Session("127.0.0.1", 0) as get_s:
        seed = await seed_s.add_torrent(data, src_parent, seed_only=True)
        assert seed.status().state == "seeding"
        leech = await get_s.add_torrent(meta, out, peers=[("127.0.0.1", seed_s.port or 0)])
        await leech.wait_complete(timeout=30)
        return seed.status(), leech.status()
