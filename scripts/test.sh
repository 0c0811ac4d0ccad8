#!/usr/bin/env bash
# Runs Cairn's whole test suite: installs everything into .venv, checks the
# generated protobuf code is fresh, then runs pytest (which starts its own
# embedded PostgreSQL and NATS). Extra arguments go to pytest.
source "$(dirname "$0")/venv.sh"
source "$(dirname "$0")/test_tools.sh"
python tools/gen_proto.py --check
set +e
python -m pytest "$@"
code=$?
if [ $code -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit $code
