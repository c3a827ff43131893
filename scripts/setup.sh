#!/usr/bin/env bash
# Set up everything swarm's tests and demo need on a fresh Debian machine:
# the reference peers from Debian's packages, then a venv with swarm installed.
set -euo pipefail
cd "$(dirname "$0")/.."
APT_PACKAGES="aria2 opentracker mktorrent redis-server wrk transmission-cli tmux iproute2 chromium nodejs"
missing=""
for pkg in $APT_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "setup: missing Debian packages:$missing (run as root to install them)" >&2
    fi
fi
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# pip's build chatter goes to a log; it is shown only when the install fails.
log=.venv/setup.log
if ! { .venv/bin/python -m pip install -q --upgrade pip && .venv/bin/python -m pip install -q -e '.[test]'; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "setup: pip install failed (log above, also in $log)" >&2
    exit 1
fi
