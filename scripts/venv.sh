# Sourced by the other scripts: makes .venv with Python 3.11 and installs Cairn
# with its server, test and otel extras into it (again only when pyproject.toml
# changed); otel because the trace tests need the OpenTelemetry SDK.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))'; then
    echo "Cairn needs Python 3.11 or newer; $PY is $("$PY" --version)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.cairn-installed"
if [ ! -f "$STAMP" ] || [ "$ROOT/pyproject.toml" -nt "$STAMP" ]; then
    echo "==> installing Cairn and its dependencies into $VENV"
    if ! "$VENV/bin/python" -m pip install -e "$ROOT[server,dev,otel]" > "$VENV/pip.log" 2>&1; then
        cat "$VENV/pip.log" >&2
        echo "pip install failed (log: $VENV/pip.log)" >&2
        exit 1
    fi
    "$VENV/bin/python" -c "import cairn_cli.main, services.history.main, worker_sdk, pytest" \
        || { echo "installation into $VENV failed" >&2; exit 1; }
    touch "$STAMP"
fi
export PATH="$VENV/bin:$VENV/buf/node_modules/.bin:$PATH"
cd "$ROOT"
