#!/usr/bin/env bash
# `make demo`: seed a short history into .dagster_home, then serve the example on $PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-3000}"
DEMO_DAYS="${DEMO_DAYS:-6}"
# the seeded chain waits between jobs as the deployed chain sensor and run launcher do, so the
# fingerprint learns realistic start times for the next job (what speculation has to beat)
DEMO_CHAIN_DELAY="${DEMO_CHAIN_DELAY:-3}"
BIN="$PWD/.venv/bin"
export DAGSTER_HOME="${DEMO_HOME:-$PWD/.dagster_home}"
# Live runs and the seeded history use the same compute scale and warehouse load time, so learned
# durations match. A warehouse load takes seconds to minutes in real pipelines; while the live
# ingest_job waits at its (critical) load, the speculative sensor pre-executes train_job's
# non-critical steps, which are ready before the chain sensor starts train_job.
export SHADOW_DAGSTER_EXAMPLE_SCALE="${SHADOW_DAGSTER_EXAMPLE_SCALE:-0.25}"
export SHADOW_DAGSTER_EXAMPLE_LOAD_S="${SHADOW_DAGSTER_EXAMPLE_LOAD_S:-30}"

if "$BIN/python" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))) != 0)" "$PORT"; then
  echo "port $PORT is already in use; run: make demo PORT=<free port>" >&2
  exit 1
fi

if ! "$BIN/python" -c "import sys
from demo_project.resources import load_seconds_from_env, scale_from_env
try:
    scale_from_env(); load_seconds_from_env()
except ValueError as exc:
    sys.exit(str(exc))"; then
  exit 1
fi

mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

# DEMO_SKIP_SEED=1 serves the home as it is (the tests use it to start `dagster dev` quickly)
if [ "${DEMO_SKIP_SEED:-0}" != 1 ]; then
  echo "seeding $DEMO_DAYS days of history into $DAGSTER_HOME (skipped when present)"
  "$BIN/python" -W ignore -m demo_project.simulate --days "$DEMO_DAYS" --runs-per-day 1 --full --if-empty \
    --chain-delay "$DEMO_CHAIN_DELAY"

  echo "ingesting signals and fitting the fingerprint"
  "$BIN/shadow-dagster" ingest --resolution-ms 10
  "$BIN/dagster" job execute -f definitions.py -j shadow_dagster_refit >/dev/null
fi

# Stopping: Ctrl-C (SIGINT) or SIGTERM to this script stops dagster dev and everything it started
# (webserver, daemon, code servers, run workers: one process group), waits DEMO_STOP_GRACE seconds
# for a clean shutdown, then kills what is left. The commands below run in the background and the
# script waits for them, so that the trap runs at once instead of after the command in hand.
DEV_PID=""
CHILD=""
exec 3>&2   # the trap's messages: stderr as it is here, whatever a command in hand redirected
STOP_GRACE="${DEMO_STOP_GRACE:-15}"

# spawn SETSID PROGRAM ARGS...: start PROGRAM in the background with SIGINT, SIGTERM and SIGQUIT at
# their defaults (a background job of a non-interactive shell starts with SIGINT ignored, and
# Dagster's commands map SIGTERM to their SIGINT handler, so they would ignore both); with SETSID=1
# in a session and process group of its own.
spawn() {
  "$BIN/python" -c 'import os, signal, sys
for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
    signal.signal(sig, signal.SIG_DFL)
if sys.argv[1] == "1":
    try:
        os.setsid()
    except OSError:   # already a group leader (a shell with job control): the group is its own
        pass
os.execv(sys.argv[2], sys.argv[2:])' "$@" &
}
# run PROGRAM ARGS...: run it to the end, interruptible by the trap
run() {
  spawn 0 "$@"
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}
alive() {   # a process of process group $1 still runs (an exited, unreaped leader does not count)
  ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {found = 1} END {exit !found}'
}
stop_dev() {
  trap - INT TERM EXIT
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null || true
  fi
  if [ -n "$DEV_PID" ]; then
    echo "stopping dagster dev (process group $DEV_PID)" >&3
  fi
  if [ -n "$DEV_PID" ] && alive "$DEV_PID"; then
    kill -INT -- "-$DEV_PID" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE))   # wall-clock seconds: each check costs time on a busy host
    while alive "$DEV_PID" && [ "$SECONDS" -lt "$deadline" ]; do
      sleep 0.2
    done
    if alive "$DEV_PID"; then
      echo "dagster dev still running after ${STOP_GRACE}s: killing its process group" >&3
      kill -KILL -- "-$DEV_PID" 2>/dev/null || true
    fi
  fi
  if [ -n "$CHILD" ] && kill -0 "$CHILD" 2>/dev/null; then
    kill -KILL "$CHILD" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap 'stop_dev; exit 130' INT
trap 'stop_dev; exit 143' TERM
trap stop_dev EXIT

# dagster dev in its own session and process group: the trap above signals that group
spawn 1 "$BIN/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "$PORT"
DEV_PID=$!

for _ in $(seq 1 120); do
  if run "$BIN/python" -c "import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1], timeout=2)
except Exception:
    sys.exit(1)" "http://127.0.0.1:$PORT/server_info"; then
    break
  fi
  if ! kill -0 "$DEV_PID" 2>/dev/null; then
    echo "dagster dev exited; see the messages above" >&2
    exit 1
  fi
  sleep 1
done

# a live workflow instance for the newest partition: the speculative sensor predicts its next
# steps and launches shadow runs of the non-critical ones while it runs
LIVE_DAY="$("$BIN/python" -c 'import datetime as d; print(d.date.today() - d.timedelta(days=1))')"
LIVE_KEY="daily_pipeline:$LIVE_DAY#demo-$(date +%s)"
run "$BIN/dagster" job launch -w workspace.yaml -j ingest_job \
  --tags "{\"dagster/partition\": \"$LIVE_DAY\", \"shadow_dagster/workflow\": \"$LIVE_KEY\"}" >/dev/null
echo "launched a live ingest_job run for $LIVE_DAY (workflow $LIVE_KEY)"

echo
echo "shadow-dagster demo is up: http://127.0.0.1:$PORT"
echo "  runs (shadow runs carry shadow_dagster/shadow=true): http://127.0.0.1:$PORT/runs"
echo "  lineage: http://127.0.0.1:$PORT/locations/shadow_dagster_example/asset-groups/shadow_dagster/lineage"
echo "(Ctrl-C stops it; history and outputs stay in $DAGSTER_HOME)"
echo "following $LIVE_KEY: its shadow runs and reuses are printed below as they happen"
run "$BIN/python" -W ignore -m demo_project.watch --workflow "$LIVE_KEY" \
  --url "http://127.0.0.1:$PORT" --timeout "${DEMO_FOLLOW_S:-600}" || true
wait "$DEV_PID"
