#!/usr/bin/env bash
# The first thing to run: installs everything into .venv, starts `cairn dev`
# (PostgreSQL, NATS and the three services) and a worker serving examples/orders.py,
# then shows (1) a run completing, with the error of a step's failed try, and
# (2) a run followed live, step by step as its steps are recorded, whose worker is
# killed with kill -9 mid-run: another worker resumes it after its last recorded
# step, which never runs again. Stops it all at the end.
source "$(dirname "$0")/venv.sh"
export CAIRN_ADDRESS="127.0.0.1:${CAIRN_DEMO_PORT:-7373}"
# A crashed worker's attempt is noticed when its lease expires: 3 s here (default 10 s).
export CAIRN_LEASE_SECONDS="${CAIRN_LEASE_SECONDS:-3}"
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

# wait_for FILE TEXT PID: until FILE contains TEXT (60 s at most), or PID exits.
wait_for() {
    for _ in $(seq 600); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        if ! kill -0 "$3" 2>/dev/null; then cat "$1"; echo "demo: process $3 exited" >&2; exit 1; fi
        sleep 0.1
    done
    cat "$1"; echo "demo: timed out waiting for '$2' in $1" >&2; exit 1
}

start_worker() {  # start_worker N: a worker serving examples.orders, logging to worker-N.log
    cairn worker examples.orders > "$log/worker-$1.log" 2>&1 &
    worker_pid=$!
    wait_for "$log/worker-$1.log" "worker registered" "$worker_pid"
    echo "    worker $1 is pid $worker_pid (log in $log/worker-$1.log)"
}

# What `cairn runs get RUN --json` says of a run, one line per thing that happened,
# then "STATE <steps recorded> <status>".
describe='
import json, sys
r = json.load(sys.stdin)
happened = []
for a in r["attempts"]:
    happened.append((a["started_at"], f"attempt {a['"'"'number'"'"']} started on {a['"'"'worker_id'"'"']}"))
    if a["finished_at"]:
        why = f" ({a['"'"'error'"'"']['"'"'type'"'"']})" if a["error"] else ""
        happened.append((a["finished_at"], f"attempt {a['"'"'number'"'"']} {a['"'"'status'"'"']}{why}"))
for s in r["steps"]:
    happened.append((s["recorded_at"], f"step {s['"'"'position'"'"']} {s['"'"'name'"'"']:<16} recorded by attempt {s['"'"'attempt'"'"']}: {json.dumps(s['"'"'output'"'"'])}"))
for at, what in sorted(h for h in happened if h[0]):
    print(f"    {at[11:23]}  {what}")
print("STATE", len(r["steps"]), r["status"])
'

# follow RUN STEPS: prints what happens to RUN as it happens (polling `cairn runs get`),
# until it has STEPS steps recorded, or has finished when STEPS is "end".
follow() {
    local seen="$log/seen-$1" lines state
    touch "$seen"
    for _ in $(seq 600); do
        lines="$(cairn runs get "$1" --json | python -c "$describe")"
        grep -v '^STATE' <<< "$lines" | grep -vxF -f "$seen" || true
        grep -v '^STATE' <<< "$lines" > "$seen"
        state=($(grep '^STATE' <<< "$lines"))
        case "${state[2]}" in completed|failed|canceled|crashed|timed_out|expired)
            [ "$2" = end ] && return 0
            echo "demo: the run ended ($state) before $2 steps were recorded" >&2; exit 1;;
        esac
        if [ "$2" != end ] && [ "${state[1]}" -ge "$2" ]; then return 0; fi
        sleep 0.2
    done
    echo "demo: run $1 did not get there within the time allowed" >&2; exit 1
}

echo "==> starting cairn dev (logs in .cairn/logs)"
# CAIRN_DEMO_PORT=P moves every port: the frontend on P, the others on P+2 to P+5.
cairn dev --port "$port" --history-port $((port + 2)) --matching-port $((port + 3)) \
    --postgres-port $((port + 4)) --nats-port $((port + 5)) > "$log/dev.log" 2>&1 &
dev_pid=$!
wait_for "$log/dev.log" "ready" "$dev_pid"
grep "ready" "$log/dev.log"

echo "==> starting a worker: cairn worker examples.orders"
start_worker 1

echo
echo "==> 1. a run: cairn trigger process-order --payload '{\"order_id\": \"A-1\", \"amount\": 42}' --wait"
echo "    (its charge_card step fails on its first try and is retried in place)"
cairn trigger process-order --payload '{"order_id": "A-1", "amount": 42}' --wait --timeout 60s

echo
echo "==> 2. a run that survives its worker: cairn trigger ship-order (4 steps of 2 s each)"
run_id="$(cairn trigger ship-order --payload '{"order_id": "S-1", "step_seconds": 2}' --json \
    | python -c 'import json, sys; print(json.load(sys.stdin)["id"])')"
echo "    run $run_id; its steps as they are recorded (cairn runs get $run_id, polled):"
follow "$run_id" 2
echo "==> kill -9 the worker (pid $worker_pid) while step 2 runs, and start another"
kill -9 "$worker_pid"
wait "$worker_pid" 2>/dev/null || true
start_worker 2
echo "    (the dead worker's attempt is found crashed when its ${CAIRN_LEASE_SECONDS} s lease expires)"
follow "$run_id" end

echo
echo "==> cairn runs get $run_id"
cairn runs get "$run_id"
echo
echo "==> the steps worker 2 ran (its log): the first two were replayed from the journal, not run again"
grep "step recorded: run=$run_id" "$log/worker-2.log" | sed 's/.*step recorded: /    /'
if grep -q "step recorded: run=$run_id .*position=[01] " "$log/worker-2.log"; then
    echo "demo: worker 2 ran a step that was already recorded" >&2; exit 1
fi
cairn runs get "$run_id" --json | python -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "completed", r["status"]
assert [s["attempt"] for s in r["steps"]] == [1, 1, 2, 2], [s["attempt"] for s in r["steps"]]
assert [a["status"] for a in r["attempts"]] == ["crashed", "completed"], r["attempts"]
'
echo
echo "Done. Start it yourself (after: source .venv/bin/activate):"
echo "    cairn dev                        # in one terminal"
echo "    cairn worker examples.orders     # in another"
echo "    cairn trigger ship-order --payload '{\"order_id\": \"S-2\"}'"
echo "    open http://127.0.0.1:7374/      # the dashboard: runs, their steps and logs, live; it asks once"
echo "                                     # for the API key cairn dev keeps in .cairn/admin.key"
echo "    cairn worker examples.agent      # an AI agent that streams tokens (README: Logs and live streams)"
