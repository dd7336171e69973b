#!/usr/bin/env bash
# `make demo`: seed a short history into .dagster_home, then serve the example on $PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT="${PORT:-3000}"
DEMO_DAYS="${DEMO_DAYS:-10}"
# the seeded chain waits between jobs as the deployed chain sensor and run launcher do, so the
# fingerprint learns realistic start times for the next job (what speculation has to beat)
DEMO_CHAIN_DELAY="${DEMO_CHAIN_DELAY:-3}"
BIN="$PWD/.venv/bin"
export DAGSTER_HOME="${DEMO_HOME:-$PWD/.dagster_home}"
# Live runs and the seeded history use the same compute scale, so learned durations match.
export SHADOW_DAGSTER_EXAMPLE_SCALE="${SHADOW_DAGSTER_EXAMPLE_SCALE:-0.25}"

if "$BIN/python" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', int(sys.argv[1]))) != 0)" "$PORT"; then
  echo "port $PORT is already in use; run: make demo PORT=<free port>" >&2
  exit 1
fi

mkdir -p "$DAGSTER_HOME"
cp dagster.yaml "$DAGSTER_HOME/dagster.yaml"

echo "seeding $DEMO_DAYS days of history into $DAGSTER_HOME (skipped when present)"
"$BIN/python" -W ignore -m shadow_dagster.example.simulate --days "$DEMO_DAYS" --runs-per-day 1 --full --if-empty \
  --chain-delay "$DEMO_CHAIN_DELAY"

echo "ingesting signals and fitting the fingerprint"
"$BIN/shadow-dagster" ingest --resolution-ms 10
"$BIN/dagster" job execute -f definitions.py -j shadow_dagster_refit >/dev/null

"$BIN/dagster" dev -w workspace.yaml -h 127.0.0.1 -p "$PORT" &
DEV_PID=$!
trap 'kill "$DEV_PID" 2>/dev/null || true; wait "$DEV_PID" 2>/dev/null || true' EXIT INT TERM

for _ in $(seq 1 120); do
  if "$BIN/python" -c "import sys,urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "http://127.0.0.1:$PORT/server_info" 2>/dev/null; then
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
"$BIN/dagster" job launch -w workspace.yaml -j ingest_job \
  --tags "{\"dagster/partition\": \"$LIVE_DAY\", \"shadow_dagster/workflow\": \"$LIVE_KEY\"}" >/dev/null
echo "launched a live ingest_job run for $LIVE_DAY (workflow $LIVE_KEY)"

echo
echo "shadow-dagster demo is up: http://127.0.0.1:$PORT"
echo "  runs (shadow runs carry shadow_dagster/shadow=true): http://127.0.0.1:$PORT/runs"
echo "  lineage: http://127.0.0.1:$PORT/locations/shadow_dagster_example/asset-groups/shadow_dagster/lineage"
echo "(Ctrl-C stops it; history and outputs stay in $DAGSTER_HOME)"
wait "$DEV_PID"
