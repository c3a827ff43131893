"""docs/cli.md is the CLI reference (issue 16, item 16): every option of every command's
argparse parser is listed in that command's section, nothing listed there is missing from
the parser (unless marked "not yet"), and user-facing docs link only to files in the repo."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from swarm.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "cli.md"


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _sections() -> dict[str, str]:
    """Text of each ``## `swarm COMMAND` `` section, by command."""
    text = DOC.read_text(encoding="utf-8")
    out = {}
    for section in re.split(r"^(?=## )", text, flags=re.M):
        m = re.match(r"## `swarm (\w+)`", section)
        if m:
            out[m.group(1)] = section
    return out


def _documented(section: str) -> set[str]:
    """Options named in the first cell of the section's table rows (not those marked not yet)."""
    names: set[str] = set()
    for row in re.findall(r"^\| (.+?) \|(.*)$", section, flags=re.M):
        if "not yet" not in row[1]:
            names.update(re.findall(r"`(--?[\w-]+)", row[0]))
    return names


COMMANDS = sorted(_commands())


def test_every_command_has_a_section() -> None:
    assert set(_sections()) == set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_is_documented(command: str) -> None:
    parser = _commands()[command]
    section = _sections()[command]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction):
            continue
        if not action.option_strings:  # a positional: its metavar heads a table row
            assert f"| `{action.metavar}` |" in section, (command, action.metavar)
        for opt in action.option_strings:
            assert re.search(rf"`{re.escape(opt)}[` ]", section), f"swarm {command} {opt} missing from docs/cli.md"


@pytest.mark.parametrize("command", COMMANDS)
def test_nothing_documented_that_the_parser_lacks(command: str) -> None:
    accepted = {opt for a in _commands()[command]._actions for opt in a.option_strings}
    extra = _documented(_sections()[command]) - accepted
    assert not extra, f"docs/cli.md lists for swarm {command} options it does not accept: {extra}"


def test_user_docs_link_only_inside_the_repo() -> None:
    files = [REPO / "README.md", *(REPO / d for d in ("docs", "swarm", "tracker", "examples"))]
    offenders = []
    for top in files:
        for path in [top] if top.is_file() else sorted(top.rglob("*")):
            if path.suffix not in (".md", ".py") or not path.is_file():
                continue
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "shared/" in line:
                    offenders.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
    # and every relative link in README and docs/ points at a file that exists
    for md in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = re.sub(r"`[^`\n]*`", "", md.read_text(encoding="utf-8"))  # code is not a link
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
            assert (md.parent / target).exists(), f"{md.relative_to(REPO)} links to missing {target}"
