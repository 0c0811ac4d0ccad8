#!/usr/bin/env bash
# Regenerates the dashboard's screenshots shown in README.md: runs the browser test
# that takes them (tests/browser/test_dashboard_screenshots.py, against a fresh
# cluster) and copies its four PNGs to docs/screenshots/. Installs what the test
# needs first, as scripts/test.sh does.
source "$(dirname "$0")/venv.sh"
source "$(dirname "$0")/test_tools.sh"
ARTIFACTS="$(mktemp -d)"
trap 'rm -rf "$ARTIFACTS"' EXIT
CAIRN_TEST_ARTIFACTS="$ARTIFACTS" python -m pytest -q -p no:cacheprovider \
    tests/browser/test_dashboard_screenshots.py
mkdir -p docs/screenshots
for name in runs run queues key; do
    cp "$ARTIFACTS/screenshots/$name.png" "docs/screenshots/$name.png"
done
echo "==> docs/screenshots/runs.png, run.png, queues.png and key.png updated"
