#!/usr/bin/env bash
# The test command (README): installs what the tests need, then lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
lint_dirs=""
for d in swarm tracker tests examples benchmarks fuzz; do [ -d "$d" ] && lint_dirs="$lint_dirs $d"; done
echo "== ruff"; ruff check $lint_dirs
echo "== mypy"; mypy swarm tracker
echo "== pytest"
set +e
pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
    echo "pytest collected no tests: that is a failure" >&2
    exit 1
fi
exit "$rc"
