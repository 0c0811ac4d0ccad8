#!/usr/bin/env bash
# Runs Cairn's benchmark: installs Cairn into .venv (like scripts/test.sh), then
# bench/run.py with this script's arguments, e.g. `scripts/bench.sh --quick`.
# The peers (DBOS, pgqueuer) install on first use into bench/.venv-peers.
source "$(dirname "$0")/venv.sh"
exec python bench/run.py "$@"
