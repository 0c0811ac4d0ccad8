#!/usr/bin/env bash
# Lint and type checks, run by .ci/run before the tests: ruff (lint and format)
# on all hand-written code, mypy (strict on worker_sdk, default elsewhere).
source "$(dirname "$0")/venv.sh"
ruff check .
ruff format --check .
mypy
