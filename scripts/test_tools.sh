# Sourced by scripts/test.sh after venv.sh: the tools only the tests need (buf,
# the conformance suite's Node.js packages, Prometheus, Chromium and axe-core for
# the browser tests), so `scripts/demo.sh` and `cairn dev` never wait on npm or apt-get.
BUF="$VENV/buf/node_modules/.bin/buf"
if [ ! -x "$BUF" ] && command -v npm >/dev/null; then
    echo "==> installing buf (protobuf linter) from npm into $VENV/buf"
    npm install --silent --prefix "$VENV/buf" @bufbuild/buf@1.75.0 >/dev/null 2>&1 \
        || echo "warning: npm could not install @bufbuild/buf; the proto lint test will fail" >&2
fi
# The protocol conformance suite's Node.js packages (tests/conformance/node), from
# its package-lock.json, again only when the lock file or package.json changed.
CONFORMANCE_NODE="$ROOT/tests/conformance/node"
NODE_STAMP="$CONFORMANCE_NODE/node_modules/.cairn-installed"
if [ ! -f "$NODE_STAMP" ] || [ "$CONFORMANCE_NODE/package-lock.json" -nt "$NODE_STAMP" ] \
    || [ "$CONFORMANCE_NODE/package.json" -nt "$NODE_STAMP" ]; then
    if command -v npm >/dev/null; then
        echo "==> installing the conformance suite's Node packages into $CONFORMANCE_NODE/node_modules"
        if ! npm ci --prefix "$CONFORMANCE_NODE" --no-audit --no-fund > "$VENV/npm-conformance.log" 2>&1; then
            cat "$VENV/npm-conformance.log" >&2
            echo "npm ci in $CONFORMANCE_NODE failed (log: $VENV/npm-conformance.log)" >&2
            exit 1
        fi
        touch "$NODE_STAMP"
    else
        echo "warning: npm not found; the Node.js conformance tests (tests/conformance) will fail" >&2
    fi
fi
# Prometheus and promtool (Debian's prometheus package) for the metrics tests
# (tests/cluster/test_metrics.py skips without them): installed quietly when
# missing and apt-get may run (root, or sudo without a password); tried once.
PROM_TRIED="$VENV/.prometheus-tried"
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    if [ ! -f "$PROM_TRIED" ] && command -v apt-get >/dev/null; then
        SUDO=""
        [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
        if [ -z "$SUDO" ] || sudo -n true 2>/dev/null; then
            echo "==> installing prometheus and promtool with apt-get (for the metrics tests)"
            if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
                --no-install-recommends prometheus; } > "$VENV/apt-prometheus.log" 2>&1; then
                echo "warning: apt-get could not install prometheus (log: $VENV/apt-prometheus.log);" \
                    "the metrics tests that need it will skip" >&2
            fi
        fi
        touch "$PROM_TRIED"
    fi
fi
# The browser tests' Node.js package (axe-core, injected into the dashboard's pages by
# tests/browser), from tests/browser/package-lock.json, again only when it changed.
BROWSER_NODE="$ROOT/tests/browser"
BROWSER_STAMP="$BROWSER_NODE/node_modules/.cairn-installed"
if [ ! -f "$BROWSER_STAMP" ] || [ "$BROWSER_NODE/package-lock.json" -nt "$BROWSER_STAMP" ] \
    || [ "$BROWSER_NODE/package.json" -nt "$BROWSER_STAMP" ]; then
    if command -v npm >/dev/null; then
        echo "==> installing the browser tests' Node packages (axe-core) into $BROWSER_NODE/node_modules"
        if ! npm ci --prefix "$BROWSER_NODE" --no-audit --no-fund > "$VENV/npm-browser.log" 2>&1; then
            cat "$VENV/npm-browser.log" >&2
            echo "npm ci in $BROWSER_NODE failed (log: $VENV/npm-browser.log)" >&2
            exit 1
        fi
        touch "$BROWSER_STAMP"
    else
        echo "warning: npm not found; the accessibility tests (tests/browser) will fail" >&2
    fi
fi
# Chromium (Debian's chromium package, /usr/bin/chromium) for the dashboard's browser
# tests (tests/browser, driven by Playwright from PyPI, which never downloads a browser):
# installed with apt-get when missing and apt-get may run (root, or sudo without a
# password); a failed install stops here with its log.
CHROMIUM="${CAIRN_CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
        echo "==> installing chromium with apt-get (for the browser tests in tests/browser)"
        if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
            --no-install-recommends chromium; } > "$VENV/apt-chromium.log" 2>&1 || [ ! -x "$CHROMIUM" ]; then
            cat "$VENV/apt-chromium.log" >&2
            echo "apt-get could not install chromium (log: $VENV/apt-chromium.log);" \
                "the browser tests (tests/browser) need $CHROMIUM" >&2
            exit 1
        fi
    else
        echo "warning: $CHROMIUM is missing and apt-get cannot run here;" \
            "the browser tests (tests/browser) will fail (install Debian's chromium, or set CAIRN_CHROMIUM)" >&2
    fi
fi
export PATH="$VENV/buf/node_modules/.bin:$PATH"
