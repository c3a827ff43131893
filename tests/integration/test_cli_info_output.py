"""`swarm info` (issue 16, item 14): warnings about a torrent (sanitised paths) go to stderr,
stdout keeps only the description; a torrent with both `length` and `files` is refused."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from swarm.core.bencode import encode
from tests.helpers.procs import ENV, SWARM


def _torrent(tmp_path: Path, **extra: object) -> Path:
    info = {
        b"name": b"d", b"piece length": 16384, b"pieces": bytes(20),
        b"files": [{b"length": 10, b"path": [b"..", b"evil"]}],
    }
    info.update({k.encode(): v for k, v in extra.items()})
    path = tmp_path / "t.torrent"
    path.write_bytes(encode({b"info": info}))
    return path


def _info(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SWARM, "info", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=30)


def test_warnings_go_to_stderr(tmp_path: Path) -> None:
    t = _torrent(tmp_path)
    r = _info(str(t), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stdout and "sanitised" not in r.stdout
    assert r.stderr.startswith("swarm: warning: ") and "sanitised" in r.stderr
    r = _info(str(t), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert any("sanitised" in w for w in json.loads(r.stdout)["warnings"])  # stdout: JSON only
    assert "sanitised" in r.stderr
    r = _info(str(t), "-q", cwd=tmp_path)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


def test_length_and_files_is_one_error_line(tmp_path: Path) -> None:
    r = _info(str(_torrent(tmp_path, length=10)), cwd=tmp_path)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "both 'length' and 'files'" in r.stderr
