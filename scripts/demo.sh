#!/usr/bin/env bash
# A local demo network on 127.0.0.1: the real koi-net 2.1.2 coordinator (:8080) and a koi-net GitHub sensor (:8007)
# emitting the sample GitHub events in tests/fixtures/, with koi-github-indexer joined to them and its API on :8004.
# Ctrl+C stops everything. State lives in ./demo/ (delete it to start afresh).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
scripts/setup-python.sh
cargo build --release --quiet
demo=$repo/demo
mkdir -p "$demo"
export PRIV_KEY_PASSWORD=${PRIV_KEY_PASSWORD:-demo-password}
export KOI_KEY_PASSWORD=${KOI_KEY_PASSWORD:-demo-password}
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

wait_ready() {  # <dir>: waits for the node's rid.txt (written last, after ready.json; a sensor: once joined)
  for _ in $(seq 1 120); do [ -f "$1/rid.txt" ] && return 0; sleep 0.5; done
  echo "demo: $1 did not start; see $1/node.log" >&2; exit 1
}
field() { .venv/bin/python -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

rm -f "$demo"/coordinator/{ready.json,rid.txt} "$demo"/sensor/{ready.json,rid.txt}
mkdir -p "$demo/coordinator" "$demo/sensor"
.venv/bin/python tests/py/coordinator.py --dir "$demo/coordinator" --port 8080 > "$demo/coordinator/node.log" 2>&1 &
pids+=($!)
wait_ready "$demo/coordinator"
coordinator_rid=$(field "$demo/coordinator/ready.json" rid)
coordinator_url=$(field "$demo/coordinator/ready.json" base_url)
# koi-net quietly moves to the next port when its own is taken: say so instead of running on a port nobody expects.
check_port() {  # <dir> <wanted port> <role>
  local port; port=$(field "$1/ready.json" port)
  if [ "$port" != "$2" ]; then
    echo "demo: port $2 is taken, so koi-net started the $3 on :$port instead; stop what holds :$2" >&2
    echo "      (see: ss -ltnp 'sport = :$2') and run the demo again" >&2
    exit 1
  fi
}
check_port "$demo/coordinator" 8080 coordinator

.venv/bin/python - "$repo/tests/fixtures/github-event-contents.json" > "$demo/sensor/initial.json" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))
print(json.dumps([{"rid": f"orn:github.event:{i['rid_repo']}:{i['event_id']}", "contents": i["contents"]} for i in items]))
PY
.venv/bin/python tests/py/sensor.py --dir "$demo/sensor" --port 8007 \
  --coordinator-url "$coordinator_url" --coordinator-rid "$coordinator_rid" \
  --initial "$demo/sensor/initial.json" --spool "$demo/sensor/spool" > "$demo/sensor/node.log" 2>&1 &
pids+=($!)
wait_ready "$demo/sensor"
check_port "$demo/sensor" 8007 sensor

# The daemon runs on config.toml.example as it is, but for the two site-specific values: the first contact
# (this demo's coordinator) and a data dir inside ./demo/ (the example's /var/lib/… is for the systemd service).
sed -e "s|^url = .*|url = \"$coordinator_url\"|" \
    -e "s|^rid = .*|rid = \"$coordinator_rid\"|" \
    -e "s|^data_dir = .*|data_dir = \"indexer-data\"|" \
    config.toml.example > "$demo/config.toml"
echo "demo: coordinator $coordinator_rid at $coordinator_url" >&2
echo "demo: try  curl -s http://127.0.0.1:8004/api/processor/github/status" >&2
target/release/koi-github-indexer run --config "$demo/config.toml" &
pids+=($!)
wait "${pids[-1]}"
