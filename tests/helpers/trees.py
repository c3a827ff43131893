"""Comparing a downloaded directory tree with its source."""

from __future__ import annotations

from pathlib import Path


def same_tree(a: Path, b: Path) -> bool:
    """The same files with the same bytes under ``a`` and ``b`` (``b``'s resume data aside)."""
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and ".swarm" not in p.parts)
    return fa == fb and all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)
