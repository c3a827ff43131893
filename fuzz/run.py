"""Run the fuzz targets under atheris (libFuzzer), each for a set time, and report.

    python -m fuzz.run                 # every target, 60 s each
    python -m fuzz.run -t 5 wire krpc  # two targets, 5 s each

Each target runs in its own subprocess (libFuzzer owns the process and exits
on the first finding). The seed corpus is ``fuzz/corpus/<target>/`` (read
only); new inputs go to a scratch directory (``--keep DIR`` keeps them). A
finding is written to ``fuzz/findings/<target>-crash-<sha1>`` (or ``timeout-``,
``oom-``) and printed with its exception; the exit status is 1 if any target
found something. Per target the table shows executions, executions per
second, atheris' coverage counters (``cov``: instrumented Python branches
reached; ``ft``: libFuzzer features) and the corpus size.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import re
import subprocess
import sys
import tempfile
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: sys.settrace's callback type (typeshed's TraceFunction is not importable at run time).
TraceFunction = Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CORPUS = HERE / "corpus"
#: libFuzzer dictionaries: tokens a mutator cannot guess (keys, request lines, '²').
DICTS = HERE / "dicts"
FINDINGS = HERE / "findings"

#: One input taking longer than this (seconds) is a finding: a decoder must be fast.
UNIT_TIMEOUT = 10
RSS_LIMIT_MB = 1024
MAX_LEN = 65536


@dataclass
class Result:
    target: str
    seconds: float
    execs: int = 0
    execs_per_s: int = 0
    cov: int = 0
    ft: int = 0
    corpus: int = 0
    findings: list[str] = field(default_factory=list)
    lines_hit: int = 0  # lines run, of the functions reached in the decoder's module
    lines_total: int = 0
    detail: str = ""  # the exception or libFuzzer error of a finding
    returncode: int = 0


_PROGRESS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.M)
_STAT = re.compile(r"^stat::(\w+):\s+(\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")


def parse_output(target: str, seconds: float, text: str, returncode: int) -> Result:
    """Read libFuzzer's progress lines, final stats and artifacts from its stderr."""
    result = Result(target, seconds, returncode=returncode)
    progress = _PROGRESS.findall(text)
    if progress:
        execs, cov, ft, corp = progress[-1]
        result.execs, result.cov, result.ft, result.corpus = (
            int(execs),
            int(cov),
            int(ft),
            int(corp),
        )
    stats = dict(_STAT.findall(text))
    result.execs = int(stats.get("number_of_executed_units", result.execs))
    result.execs_per_s = int(stats.get("average_exec_per_sec", 0))
    result.findings = _ARTIFACT.findall(text)
    if result.findings or returncode not in (0,):
        start = text.find("=== Uncaught Python exception")
        if start < 0:
            start = max(text.find("==ERROR"), text.find("ERROR: libFuzzer"), 0)
        result.detail = text[start : start + 3000].strip()
        if not result.findings:  # died without an artifact: still a finding
            result.findings = [f"(exit status {returncode}, no artifact)"]
    return result


def run_target(
    target: str,
    seconds: float,
    keep: Path | None = None,
    findings: Path = FINDINGS,
    lines: bool = False,
) -> Result:
    """Fuzz one target in a subprocess for ``seconds``; return what libFuzzer reported.

    ``lines``: then replay the seeds and what the run added, counting the lines
    of the decoder functions that ran (coverage.py's view, without coverage.py).
    """
    findings.mkdir(parents=True, exist_ok=True)
    seeds = CORPUS / target
    with tempfile.TemporaryDirectory(prefix=f"fuzz-{target}-") as scratch:
        work = keep / target if keep is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        args = [
            sys.executable, "-m", "fuzz.run", "--child", target, "--",
            f"-max_total_time={max(1, round(seconds))}",
            f"-timeout={UNIT_TIMEOUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-max_len={MAX_LEN}",
            f"-artifact_prefix={findings}/{target}-",
            "-print_final_stats=1",
            str(work),
        ]  # fmt: skip
        tokens = DICTS / f"{target}.dict"
        if tokens.is_file():
            args.insert(args.index("-print_final_stats=1"), f"-dict={tokens}")
        if seeds.is_dir():
            args.append(str(seeds))
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(
            args,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=seconds + 120,
        )
        result = parse_output(target, seconds, proc.stdout, proc.returncode)
        if lines and not result.findings:
            result.lines_hit, result.lines_total = line_coverage(target, [work, seeds])
    return result


#: The module whose lines a target is meant to exercise.
MODULES = {
    "bencode": "swarm/core/bencode.py",
    "metainfo": "swarm/core/metainfo.py",
    "magnet": "swarm/core/magnet.py",
    "wire": "swarm/core/wire.py",
    "extensions": "swarm/core/extensions.py",
    "krpc": "swarm/core/dht/krpc.py",
    "tracker_query": "swarm/core/announce.py",
    "fastlane_head": "tracker/fastlane.py",
    "tracker_answer": "swarm/core/announce.py",
    "udp_tracker": "swarm/core/announce.py",
    "http_range": "swarm/httpstream.py",
    "lsd": "swarm/core/lsd.py",
    "hashes": "swarm/core/hashes.py",
}


def _function_lines(path: Path) -> list[set[int]]:
    """The lines of each function of a module (module and class bodies run at import)."""
    out: list[set[int]] = []
    todo = [compile(path.read_text(), str(path), "exec")]
    while todo:
        code = todo.pop()
        todo += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        if code.co_flags & inspect.CO_OPTIMIZED:
            lines = {line for _, _, line in code.co_lines() if line}
            lines.discard(code.co_firstlineno)  # the def line
            out.append(lines)
    return out


def line_coverage(target: str, folders: list[Path]) -> tuple[int, int]:
    """Replay the target's corpus; of the functions it reached in the target's module,
    return (lines run, lines in all): how deep inside the decoders the corpus goes."""
    from fuzz.targets import TARGETS

    path = ROOT / MODULES[target]
    wanted = str(path)
    hits: set[int] = set()

    def local(frame: types.FrameType, event: str, arg: object) -> TraceFunction:
        if event == "line":
            hits.add(frame.f_lineno)
        return local

    def tracer(frame: types.FrameType, event: str, arg: object) -> TraceFunction | None:
        return local if frame.f_code.co_filename == wanted else None

    sys.settrace(tracer)
    try:
        for folder in folders:
            for item in sorted(folder.glob("*")) if folder.is_dir() else ():
                with contextlib.suppress(Exception):  # a finding was already reported
                    TARGETS[target](item.read_bytes())
    finally:
        sys.settrace(None)
    reached = [lines for lines in _function_lines(path) if lines & hits]
    total = set().union(*reached)
    return len(hits & total), len(total)


def _child(target: str, libfuzzer_args: list[str]) -> None:
    """Inside the subprocess: instrument swarm and tracker, then hand over to libFuzzer."""
    import atheris

    with atheris.instrument_imports(include=["swarm", "tracker"]):
        from fuzz.targets import TARGETS
    atheris.Setup([sys.argv[0], *libfuzzer_args], TARGETS[target])
    atheris.Fuzz()


def format_table(results: list[Result]) -> str:
    lines = [
        "| target | seconds | execs | execs/s | cov | ft | corpus | lines run in the functions reached | findings |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in results:
        found = ", ".join(Path(f).name for f in r.findings) or "none"
        share = (
            f"{MODULES[r.target]} {r.lines_hit}/{r.lines_total} "
            f"({100 * r.lines_hit // r.lines_total}%)"
            if r.lines_total
            else "-"
        )
        lines.append(
            f"| {r.target} | {r.seconds:g} | {r.execs} | {r.execs_per_s} | {r.cov} | {r.ft} "
            f"| {r.corpus} | {share} | {found} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(argv[1], argv[3:] if argv[2:3] == ["--"] else argv[2:])
        return 0
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    parser.add_argument("targets", nargs="*", help=f"default: all of {', '.join(TARGETS)}")
    parser.add_argument("-t", "--time", type=float, default=60.0, help="seconds per target")
    parser.add_argument("--keep", type=Path, help="keep the grown corpora in this directory")
    args = parser.parse_args(argv)
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    results = []
    for name in names:
        result = run_target(name, args.time, args.keep, lines=True)
        results.append(result)
        state = "FINDING " + ", ".join(result.findings) if result.findings else "ok"
        print(
            f"{name}: {result.execs} execs, cov {result.cov}, ft {result.ft}: {state}", flush=True
        )
        if result.detail:
            print(result.detail, flush=True)
    print()
    print(format_table(results))
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
