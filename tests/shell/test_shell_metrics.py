"""The shell keeps its shape (issue 18): scripts/shell_metrics.py's limits hold.

No shell module over ~700 lines, no class over ~40 methods, no unjustified
cross-object private reach (at most a handful marked ``# private-ok: why``),
no import cycle among shell modules at run time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "shell_metrics.py"


def test_shell_metrics_within_limits() -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--json"], capture_output=True, text=True, timeout=60
    )
    s = json.loads(run.stdout)
    assert run.returncode == 0, run.stderr
    mods = s["modules"]
    assert "swarm.torrent" in mods and "swarm.parts.download" in mods  # it measured the shell
    assert all(m["lines"] <= 700 for m in mods.values()), mods
    assert all(m["max_methods"] <= 40 for m in mods.values()), mods
    assert s["reaches"] == []
    assert len(s["justified"]) <= 6
    assert s["cycles"] == []


def test_the_script_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """A reach into a private, a fat class and a run-time cycle are each reported."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import shell_metrics as sm
    finally:
        sys.path.pop(0)
    pkg = tmp_path / "swarm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nimport argparse\nfrom swarm import b\n"
        "if TYPE_CHECKING:\n    from swarm import c\n"
        "def f(x):\n    return x._secret, argparse._SubParsersAction\n"
        "def g(x):\n    return x._fine  # private-ok: tested\n"
    )
    (pkg / "b.py").write_text(
        "def h():\n    from swarm import a\n"
        "class Fat:\n" + "".join(f"    def m{i}(self):\n        return self._x\n" for i in range(41))
    )
    (pkg / "c.py").write_text("import swarm.a\n")
    s = sm.summary(sm.analyse(tmp_path), tmp_path)
    assert [r.split(": ")[1] for r in s["reaches"]] == ["x._secret"]
    assert [r.split(": ")[1] for r in s["justified"]] == ["x._fine"]
    # a <-> b at run time (b's import is inside a function: it runs too); a -> c only
    # under TYPE_CHECKING, so c -> a closes no cycle
    assert s["cycles"] == [["swarm.a", "swarm.b"]]
    assert s["modules"]["swarm.b"]["max_methods"] == 41
    assert any("41 methods" in p for p in sm.problems(s))
