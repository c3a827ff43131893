"""The fuzz targets (fuzz/targets.py) in the default run.

Every seed of ``fuzz/corpus/`` goes through its target without atheris (fast,
deterministic), then each target runs under atheris for a few seconds
(``SWARM_FUZZ_SECONDS``, default 2; about 40 s in all on an idle machine). Any finding fails
the test with the exception and the input's path; turn it into a literal
regression test in tests/core/test_fuzz_regressions.py and fix the decoder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from conftest import IN_CI

from fuzz.run import CORPUS, run_target
from fuzz.targets import TARGETS, Target
from swarm.errors import BencodeError

SECONDS = float(os.environ.get("SWARM_FUZZ_SECONDS", "2"))


def test_every_target_has_seeds() -> None:
    for name in TARGETS:
        seeds = list((CORPUS / name).glob("*"))
        assert len(seeds) >= 2, f"fuzz/corpus/{name} has {len(seeds)} seeds"


@pytest.mark.parametrize("name", list(TARGETS))
def test_seed_corpus_replays_cleanly(name: str) -> None:
    seeds = sorted((CORPUS / name).glob("*"))
    assert seeds
    for path in seeds:
        try:
            TARGETS[name](path.read_bytes())
        except Exception as exc:  # a finding: name the seed
            raise AssertionError(f"{path.name}: {exc!r}") from exc


def test_a_target_lets_only_the_documented_error_pass() -> None:
    """The contract check itself: the allowed error is a refusal, any other escapes."""

    def decoder(data: bytes) -> None:
        raise BencodeError("refused", 0) if data else IndexError("crash")

    check = Target("example", decoder, (BencodeError,), "")
    check(b"x")
    with pytest.raises(IndexError):
        check(b"")


@pytest.mark.parametrize("name", list(TARGETS))
def test_fuzz_target_briefly(name: str, tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        if IN_CI:
            pytest.fail("atheris is not installed (it is in the test extra)")
        pytest.skip("atheris is not installed")
    result = run_target(name, SECONDS, findings=tmp_path)
    assert not result.findings, f"{name}: {result.findings}\n{result.detail}"
    assert result.returncode == 0, result.detail
    assert result.execs > 0 and result.cov > 0, f"{name} did not run: {result}"
