#!/usr/bin/env bash
# The first thing to run: installs everything into .venv, starts `cairn dev`
# (PostgreSQL, NATS and the three services), a worker serving examples/orders.py,
# triggers three runs and shows each completing, step by step. Stops it all at the end.
source "$(dirname "$0")/venv.sh"
export CAIRN_ADDRESS="127.0.0.1:${CAIRN_DEMO_PORT:-7373}"
port="${CAIRN_ADDRESS##*:}"
log=".cairn/demo"
mkdir -p "$log"
dev_pid=""; worker_pid=""
cleanup() {
    for pid in $worker_pid $dev_pid; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

echo "==> starting cairn dev (logs in .cairn/logs)"
cairn dev --port "$port" > "$log/dev.log" 2>&1 &
dev_pid=$!
for _ in $(seq 600); do
    grep -q "ready" "$log/dev.log" 2>/dev/null && break
    if ! kill -0 "$dev_pid" 2>/dev/null; then cat "$log/dev.log"; exit 1; fi
    sleep 0.1
done
grep "ready" "$log/dev.log"

echo "==> starting a worker: cairn worker examples.orders (log in $log/worker.log)"
cairn worker examples.orders > "$log/worker.log" 2>&1 &
worker_pid=$!
for _ in $(seq 300); do
    grep -q "worker registered" "$log/worker.log" 2>/dev/null && break
    if ! kill -0 "$worker_pid" 2>/dev/null; then cat "$log/worker.log"; exit 1; fi
    sleep 0.1
done

for order in A-1 B-2 C-3; do
    echo
    echo "==> cairn trigger process-order --payload '{\"order_id\": \"$order\", \"amount\": 42}' --wait"
    cairn trigger process-order --payload "{\"order_id\": \"$order\", \"amount\": 42}" --wait --timeout 60
done
echo
echo "==> cairn runs list"
cairn runs list --limit 5
echo
echo "Done. Start it yourself with: .venv/bin/cairn dev   (then .venv/bin/cairn worker examples.orders)"
