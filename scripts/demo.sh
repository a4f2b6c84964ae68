#!/usr/bin/env bash
# A local demo network on 127.0.0.1: the real koi-net 2.1.2 coordinator (:8080) and a koi-net GitHub sensor (:8007)
# emitting the sample GitHub events in tests/fixtures/, with koi-github-indexer joined to them and its API on :8004.
# Ctrl+C stops everything. State lives in ./demo/ (delete it to start afresh).
#
#   DEMO_DIR                      where the state lives (default: <repo>/demo)
#   DEMO_COORDINATOR_PORT, DEMO_SENSOR_PORT, DEMO_API_PORT
#                                 the three ports (default 8080, 8007, 8004)
#   KOI_INDEXER_BIN               a koi-github-indexer binary to run instead of building target/release's
#   KOI_VENV                      the Python venv (default: <repo>/.venv; made by scripts/setup-python.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
demo=${DEMO_DIR:-$repo/demo}
coordinator_port=${DEMO_COORDINATOR_PORT:-8080}
sensor_port=${DEMO_SENSOR_PORT:-8007}
api_port=${DEMO_API_PORT:-8004}
venv=${KOI_VENV:-$repo/.venv}
python=$venv/bin/python
say() { echo "demo: $*" >&2; }

say "setting up the Python venv with koi-net 2.1.2 (first run: under a minute; then instant)"
scripts/setup-python.sh
if [ -n "${KOI_INDEXER_BIN:-}" ]; then
  bin=$KOI_INDEXER_BIN
else
  bin=target/release/koi-github-indexer
  say "building $bin (the first build downloads the crates and takes about 5 minutes on 2 cores; later: seconds)"
  cargo build --release
fi
mkdir -p "$demo"
export PRIV_KEY_PASSWORD=${PRIV_KEY_PASSWORD:-demo-password}
export KOI_KEY_PASSWORD=${KOI_KEY_PASSWORD:-demo-password}
pids=()
cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'say "stopping"; cleanup; say "stopped (state kept in $demo)"; exit 0' INT TERM

wait_ready() {  # <dir>: waits for the node's rid.txt (written last, after ready.json; a sensor: once joined)
  for _ in $(seq 1 120); do [ -f "$1/rid.txt" ] && return 0; sleep 0.5; done
  say "$1 did not start; see $1/node.log"; exit 1
}
field() { "$python" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }
# koi-net quietly moves to the next port when its own is taken: say so instead of running on a port nobody expects.
check_port() {  # <dir> <wanted port> <role>
  local port; port=$(field "$1/ready.json" port)
  if [ "$port" != "$2" ]; then
    say "port $2 is taken, so koi-net started the $3 on :$port instead; stop what holds :$2"
    echo "      (see: ss -ltnp 'sport = :$2') and run the demo again" >&2
    exit 1
  fi
}

say "starting the koi-net coordinator on :$coordinator_port and a GitHub sensor on :$sensor_port"
rm -f "$demo"/coordinator/{ready.json,rid.txt} "$demo"/sensor/{ready.json,rid.txt}
mkdir -p "$demo/coordinator" "$demo/sensor"
"$python" tests/py/coordinator.py --dir "$demo/coordinator" --port "$coordinator_port" > "$demo/coordinator/node.log" 2>&1 &
pids+=($!)
wait_ready "$demo/coordinator"
coordinator_rid=$(field "$demo/coordinator/ready.json" rid)
coordinator_url=$(field "$demo/coordinator/ready.json" base_url)
check_port "$demo/coordinator" "$coordinator_port" coordinator

"$python" - "$repo/tests/fixtures/github-event-contents.json" > "$demo/sensor/initial.json" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))
print(json.dumps([{"rid": f"orn:github.event:{i['rid_repo']}:{i['event_id']}", "contents": i["contents"]} for i in items]))
PY
"$python" tests/py/sensor.py --dir "$demo/sensor" --port "$sensor_port" \
  --coordinator-url "$coordinator_url" --coordinator-rid "$coordinator_rid" \
  --initial "$demo/sensor/initial.json" --spool "$demo/sensor/spool" > "$demo/sensor/node.log" 2>&1 &
pids+=($!)
wait_ready "$demo/sensor"
check_port "$demo/sensor" "$sensor_port" sensor

# The daemon runs on config.toml.example as it is, but for the site-specific values: the first contact (this
# demo's coordinator), a data dir inside the demo's directory (the example's /var/lib/… is for the systemd service)
# and the API's port.
sed -e "s|^url = .*|url = \"$coordinator_url\"|" \
    -e "s|^rid = .*|rid = \"$coordinator_rid\"|" \
    -e "s|^data_dir = .*|data_dir = \"indexer-data\"|" \
    -e "s|^listen = \"127.0.0.1:8004\"|listen = \"127.0.0.1:$api_port\"|" \
    config.toml.example > "$demo/config.toml"
say "starting koi-github-indexer (API on 127.0.0.1:$api_port), joined to the coordinator $coordinator_rid"
"$bin" run --config "$demo/config.toml" &
daemon=$!
pids+=("$daemon")

# Ready: the API answers /health and the first catch-up from a neighbour is done and indexed.
api=http://127.0.0.1:$api_port/api/processor/github
ready=$("$python" - "$api" "$daemon" <<'PY'
import json, os, sys, time, urllib.request
api, daemon = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        os.kill(daemon, 0)
    except OSError:
        sys.exit("demo: the daemon stopped before it was ready (its log is above)")
    try:
        urllib.request.urlopen(api + "/health", timeout=2).read()
        d = json.load(urllib.request.urlopen(api + "/status", timeout=2))["details"]
        if d["neighbours"] and all(n["caught_up"] for n in d["neighbours"]) and d["inbox"] == 0 and d["events"] > 0:
            print(f'{d["events"]} events from {d["repositories"]} repositories')
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.25)
sys.exit("demo: not ready after 120 s (no catch-up finished; the log above says why)")
PY
) || exit 1

shown_dir=$demo
case $demo in "$repo"/*) shown_dir=${demo#"$repo"/} ;; esac
shown_bin=$bin
case $bin in "$repo"/*) shown_bin=${bin#"$repo"/} ;; esac
cat >&2 <<EOF

demo: ready — $ready indexed.

  Dashboard:  http://127.0.0.1:$api_port/

  Try, in another terminal:
    curl -s $api/status
    $shown_bin list-repos --config $shown_dir/config.toml
    $shown_bin show-events octo-org/hello-world --config $shown_dir/config.toml

  Stop: Ctrl+C here (the state stays in $shown_dir/; rm -rf $shown_dir to start afresh).

EOF
wait "$daemon"
