#!/usr/bin/env python3
"""Measure the asyncio shell's shape (issue 18): size, class width, private reaches, import cycles.

The pure core (``swarm/core/``) is kept small and typed by mypy strict; the
shell around it has no such guard, so this script is the guard. Per shell
module it prints the line count and the largest class's method count; then
every cross-object private reach (``x._name`` where ``x`` is not ``self`` or
``cls``, nor a library module such as ``argparse``; a line marked ``# private-ok: <why>`` is justified and listed apart);
then the import cycles among shell modules at run time (imports not under
``if TYPE_CHECKING:``, function-level imports included: they run too).

    python scripts/shell_metrics.py            # report
    python scripts/shell_metrics.py --check    # exit 1 when a limit is exceeded
    python scripts/shell_metrics.py --json     # the numbers, for tests
"""

from __future__ import annotations

import argparse
import ast
import json
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: Shell packages: everything under swarm/ except the pure core.
SHELL = "swarm"
EXCLUDE = ("swarm/core/",)

MAX_MODULE_LINES = 700
MAX_CLASS_METHODS = 40
MAX_JUSTIFIED_REACHES = 6
JUSTIFY = "# private-ok:"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    widest_class: str = ""
    max_methods: int = 0
    reaches: list[tuple[int, str]] = field(default_factory=list)
    justified: list[tuple[int, str]] = field(default_factory=list)
    library: list[tuple[int, str]] = field(default_factory=list)
    imports: set[str] = field(default_factory=set)


def shell_files(root: Path = ROOT) -> list[Path]:
    out = []
    for p in sorted((root / SHELL).rglob("*.py")):
        rel = p.relative_to(root).as_posix()
        if not any(rel.startswith(e) for e in EXCLUDE):
            out.append(p)
    return out


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Visitor(ast.NodeVisitor):
    def __init__(self, mod: Module, source_lines: list[str], package: str) -> None:
        self.mod = mod
        self.lines = source_lines
        self.package = package
        #: names bound to library modules (argparse, os): their "privates" are their API
        self.libraries: set[str] = set()

    # -- imports (skipping TYPE_CHECKING blocks) --------------------------------
    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.mod.imports.add(a.name)
            if not a.name.startswith(SHELL):
                self.libraries.add(a.asname or a.name.partition(".")[0])

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            pkg = self.package.split(".")
            pkg = pkg[: len(pkg) - node.level + 1]
            base = ".".join(pkg + ([base] if base else []))
        # "from . import events" inside swarm.ui: the package is already loading, no edge
        if not self.mod.name.startswith(base + "."):
            self.mod.imports.add(base)
        for a in node.names:  # "from swarm import torrent" imports a module
            self.mod.imports.add(f"{base}.{a.name}")

    # -- classes -----------------------------------------------------------------
    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        n = sum(isinstance(b, ast.FunctionDef | ast.AsyncFunctionDef) for b in node.body)
        if n > self.mod.max_methods:
            self.mod.max_methods = n
            self.mod.widest_class = node.name
        self.generic_visit(node)

    # -- private reaches ---------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = node.attr
        if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
            v = node.value
            if isinstance(v, ast.Name) and v.id in self.libraries:
                self.mod.library.append((node.lineno, f"{v.id}.{name}"))
            elif not (isinstance(v, ast.Name) and v.id in ("self", "cls")):
                line = self.lines[node.lineno - 1]
                what = f"{ast.unparse(v)}.{name}"
                if JUSTIFY in line:
                    self.mod.justified.append((node.lineno, what))
                else:
                    self.mod.reaches.append((node.lineno, what))
        self.generic_visit(node)


def analyse(root: Path = ROOT) -> list[Module]:
    mods = []
    for path in shell_files(root):
        text = path.read_text()
        name = module_name(path, root)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        mod = Module(name, path, text.count("\n"))
        _Visitor(mod, text.splitlines(), package).visit(ast.parse(text, str(path)))
        mods.append(mod)
    return mods


def cycles(mods: list[Module]) -> list[list[str]]:
    """Strongly connected components (size > 1) of the run-time import graph."""
    names = {m.name for m in mods}
    graph = {m.name: sorted(i for i in m.imports if i in names and i != m.name) for m in mods}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def summary(mods: list[Module], root: Path = ROOT) -> dict[str, Any]:
    return {
        "modules": {
            m.name: {"lines": m.lines, "max_methods": m.max_methods, "class": m.widest_class} for m in mods
        },
        "reaches": [f"{m.path.relative_to(root)}:{ln}: {w}" for m in mods for ln, w in m.reaches],
        "justified": [f"{m.path.relative_to(root)}:{ln}: {w}" for m in mods for ln, w in m.justified],
        "library": [f"{m.path.relative_to(root)}:{ln}: {w}" for m in mods for ln, w in m.library],
        "cycles": cycles(mods),
    }


def problems(s: dict[str, Any]) -> list[str]:
    out = []
    mods = s["modules"]
    for name, m in mods.items():
        if m["lines"] > MAX_MODULE_LINES:
            out.append(f"{name}: {m['lines']} lines (limit {MAX_MODULE_LINES})")
        if m["max_methods"] > MAX_CLASS_METHODS:
            out.append(f"{name}.{m['class']}: {m['max_methods']} methods (limit {MAX_CLASS_METHODS})")
    reaches = s["reaches"]
    justified = s["justified"]
    out += [f"private reach without '{JUSTIFY} why': {r}" for r in reaches]
    if len(justified) > MAX_JUSTIFIED_REACHES:
        out.append(f"{len(justified)} justified private reaches (limit {MAX_JUSTIFIED_REACHES})")
    cyc = s["cycles"]
    out += [f"import cycle at run time: {' <-> '.join(c)}" for c in cyc]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when a limit is exceeded")
    ap.add_argument("--json", action="store_true", help="print the numbers as JSON")
    a = ap.parse_args(argv)
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet under `| head`
    mods = analyse()
    s = summary(mods)
    if a.json:
        print(json.dumps(s, indent=1))
    else:
        print(f"{'module':32} {'lines':>6} {'methods':>8}  widest class")
        for m in sorted(mods, key=lambda m: -m.lines):
            print(f"{m.name:32} {m.lines:6} {m.max_methods:8}  {m.widest_class}")
        print(f"\ncross-object private reaches: {len(s['reaches'])}")
        for r in s["reaches"]:
            print(f"  {r}")
        print(f"justified ({JUSTIFY} ...): {len(s['justified'])}")
        for r in s["justified"]:
            print(f"  {r}")
        print(f"not counted, underscore names of library modules: {len(s['library'])}")
        cyc = s["cycles"]
        print(f"import cycles at run time: {len(cyc)}")
        for c in cyc:
            print(f"  {' <-> '.join(c)}")
    found = problems(s)
    if a.check and found:
        print("\nlimits exceeded:", *found, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
