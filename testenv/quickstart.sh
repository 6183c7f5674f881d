#!/usr/bin/env bash
# Spartakus on one machine: nats-server (JetStream), the gateway and the
# ingester with the embedded SQLite sink. Posts the original README's example
# report, and a report from the volunteer if a kubeconfig is at hand, then
# prints what landed in SQLite. Ctrl-C stops everything it started.
#
#   testenv/quickstart.sh           # keep running until Ctrl-C
#   testenv/quickstart.sh --once    # exit after printing (used by the tests)
#
# Env: SPARTAKUS_QUICKSTART_DIR (state; default a new temp dir),
#      SPARTAKUS_QUICKSTART_NO_BUILD=1 (use already built binaries),
#      KUBECONFIG (the volunteer's cluster; default ~/.kube/config if present).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
once=false
[[ "${1:-}" == "--once" ]] && once=true

target="${CARGO_TARGET_DIR:-$PWD/target}"
bin="$target/debug"
if [[ "${SPARTAKUS_QUICKSTART_NO_BUILD:-}" != 1 ]]; then
  testenv/build.sh nats-server
  cargo build --locked -p gateway -p ingester -p volunteer
fi
nats_server="${SPARTAKUS_TESTENV_BIN:-$target/testenv-bin}/nats-server"

dir="${SPARTAKUS_QUICKSTART_DIR:-$(mktemp -d -t spartakus-quickstart.XXXXXX)}"
mkdir -p "$dir"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL WHAT LOG
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "quickstart: $2 did not become ready at $1; its log:" >&2
  tail -n 30 "$3" >&2
  exit 1
}

nats_port=$(free_port); nats_mon=$(free_port); gw_port=$(free_port); ing_port=$(free_port)
cat >"$dir/nats.conf" <<CONF
listen: "127.0.0.1:$nats_port"
http: "127.0.0.1:$nats_mon"
max_payload: 16MB
jetstream { store_dir: "$dir/nats" }
CONF
"$nats_server" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$nats_mon/healthz?js-enabled-only=true" nats-server "$dir/nats.log"

export SPARTAKUS_NATS_URL="nats://127.0.0.1:$nats_port" SPARTAKUS_LOG_FORMAT=pretty
"$bin/gateway" --listen "127.0.0.1:$gw_port" >"$dir/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/readyz" gateway "$dir/gateway.log"
"$bin/ingester" --listen "127.0.0.1:$ing_port" --sink "sqlite:$dir/spartakus.sqlite" >"$dir/ingester.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$ing_port/readyz" ingester "$dir/ingester.log"

gateway="http://127.0.0.1:$gw_port"
echo "quickstart: gateway $gateway, NATS nats://127.0.0.1:$nats_port, SQLite $dir/spartakus.sqlite"
expected=1
status=$(curl -sS -o "$dir/seed.out" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary @report/testdata/v1-seed.json "$gateway/api/v1")
echo "quickstart: POST the original README's example report -> HTTP $status"
[[ "$status" == 204 ]] || { cat "$dir/seed.out" >&2; exit 1; }

kubeconfig="${KUBECONFIG:-$HOME/.kube/config}"
if [[ -f "$kubeconfig" ]]; then
  echo "quickstart: the volunteer's preview of what it would send for $kubeconfig:"
  "$bin/volunteer" --kubeconfig "$kubeconfig" --gateway "$gateway" --dry-run >"$dir/preview.json" 2>"$dir/preview.log"
  head -c 1500 "$dir/preview.json"; echo " ... ($(wc -c <"$dir/preview.json") bytes in $dir/preview.json)"
  "$bin/volunteer" --kubeconfig "$kubeconfig" --gateway "$gateway" --period 0 >"$dir/volunteer.log" 2>&1 \
    && { echo "quickstart: volunteer report sent"; expected=2; } \
    || { echo "quickstart: the volunteer could not send (see $dir/volunteer.log)"; tail -n 5 "$dir/volunteer.log"; }
else
  echo "quickstart: no kubeconfig at $kubeconfig: skipping the volunteer"
fi

db="$dir/spartakus.sqlite"
count() { sqlite3 "file:$db?mode=ro" 'SELECT count(*) FROM reports' 2>/dev/null || echo 0; }
for _ in $(seq 1 300); do
  [[ "$(count)" -ge "$expected" ]] && break
  sleep 0.1
done
echo "quickstart: reports stored: $(count) (expected $expected)"
sqlite3 -header -column "file:$db?mode=ro" \
  "SELECT r.report_id, r.cluster_id, r.master_version, datetime(r.received_at, 'unixepoch') AS received,
          (SELECT count(*) FROM nodes n WHERE n.report = r.id) AS nodes
     FROM reports r ORDER BY r.received_at" 
[[ "$(count)" -ge "$expected" ]] || exit 1
if $once; then exit 0; fi
echo "quickstart: running (pids ${pids[*]}); logs in $dir. Ctrl-C to stop."
wait
