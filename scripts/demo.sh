#!/usr/bin/env bash
# Quick start: set up, then run a tracker, a seed and a download on this machine
# (127.0.0.1 only, LAN discovery and DHT off) with the live display.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python examples/lan_demo.py "$@"
