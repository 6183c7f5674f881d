#!/usr/bin/env bash
# Spartakus on one machine: nats-server (JetStream), the gateway and the
# ingester with the embedded SQLite sink. Posts the original README's example
# report, and a report from the volunteer if a kubeconfig is at hand, then
# prints what landed in SQLite. Then it sends a synthetic population (3,000
# clusters, weekly reports over 10 weeks, every one marked
# spartakus.dev/synthetic=true) through the same path, computes weekly
# snapshots over it with stats, and serves the dashboard. Ctrl-C stops
# everything it started.
#
# The gateway runs with --backdate-synthetic (a demo-only flag: it dates the
# synthetic reports by their own timestamps, so the snapshots have a history)
# and the ingester with --retention none (it would delete reports older than
# 35 days). Never run a public collector like this.
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
  cargo build --locked -p gateway -p ingester -p volunteer -p stats -p systests --bins
fi
nats_server="${SPARTAKUS_TESTENV_BIN:-$target/testenv-bin}/nats-server"

dir="${SPARTAKUS_QUICKSTART_DIR:-$(mktemp -d -t spartakus-quickstart.XXXXXX)}"
mkdir -p "$dir"
pids=()
nats_pid=
# Stops what it started, the broker last: the ingester acknowledges what it stored as it
# stops, and with NATS already gone it would wait out its --shutdown-timeout (30 s) instead.
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    [[ "$pid" == "$nats_pid" ]] || kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    [[ "$pid" == "$nats_pid" ]] || wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$nats_pid" ]]; then
    kill "$nats_pid" 2>/dev/null || true
    wait "$nats_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # URL WHAT LOG [SECONDS]
  for _ in $(seq 1 $(( ${4:-30} * 10 ))); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "quickstart: $2 did not become ready at $1; its log:" >&2
  tail -n 30 "$3" >&2
  exit 1
}

nats_port=$(free_port); nats_mon=$(free_port); gw_port=$(free_port); ing_port=$(free_port)
stats_port=$(free_port)
cat >"$dir/nats.conf" <<CONF
listen: "127.0.0.1:$nats_port"
http: "127.0.0.1:$nats_mon"
max_payload: 17MB
# sync_interval: always: an acknowledged report is on disk (see docs/durability.md).
# max_file_store as k8s/base/nats sets it: the streams' default budgets fit in it.
jetstream { store_dir: "$dir/nats", max_file_store: 8GiB, sync_interval: always }
CONF
"$nats_server" -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
nats_pid=$!
pids+=($!)
wait_http "http://127.0.0.1:$nats_mon/healthz?js-enabled-only=true" nats-server "$dir/nats.log"

# The gateway's node-ID key: made once per state folder and kept, so node IDs stay stable
# across runs on the same folder (a collector keeps its key for ever; docs/collector.md).
[[ -s "$dir/node-id.key" ]] || (umask 077; python3 -c 'import secrets; print(secrets.token_hex(32))' >"$dir/node-id.key")
export SPARTAKUS_NATS_URL="nats://127.0.0.1:$nats_port" SPARTAKUS_LOG_FORMAT=pretty
"$bin/gateway" --listen "127.0.0.1:$gw_port" --backdate-synthetic --node-id-key-file "$dir/node-id.key" \
  >"$dir/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$gw_port/readyz" gateway "$dir/gateway.log"
"$bin/ingester" --listen "127.0.0.1:$ing_port" --sink "sqlite:$dir/spartakus.sqlite" --retention none \
  >"$dir/ingester.log" 2>&1 &
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
synthetic="EXISTS (SELECT 1 FROM extensions e WHERE e.report = r.id
                   AND e.name = 'spartakus.dev/synthetic' AND e.value = 'true')"
count() { # [WHERE]
  sqlite3 "file:$db?mode=ro" "SELECT count(*) FROM reports r WHERE ${1:-1}" 2>/dev/null || echo 0
}
wait_count() { # EXPECTED [WHERE]
  for _ in $(seq 1 1200); do
    [[ "$(count "${2:-1}")" -ge "$1" ]] && return 0
    sleep 0.1
  done
  return 1
}
wait_count "$expected" || true
echo "quickstart: reports stored: $(count) (expected $expected)"
sqlite3 -header -column "file:$db?mode=ro" \
  "SELECT r.report_id, r.cluster_id, r.master_version, datetime(r.received_at, 'unixepoch') AS received,
          (SELECT count(*) FROM nodes n WHERE n.report = r.id) AS nodes
     FROM reports r ORDER BY r.received_at"
[[ "$(count)" -ge "$expected" ]] || exit 1

# A synthetic population through the same path: gateway -> JetStream -> ingester -> SQLite.
echo "quickstart: sending a synthetic population (3,000 clusters, 10 weeks of weekly reports) ..."
"$bin/population" --gateway "$gateway" >"$dir/population.out" 2>"$dir/population.log" \
  || { echo "quickstart: the population could not be sent:" >&2; tail -n 5 "$dir/population.log" >&2; exit 1; }
head -n 1 "$dir/population.out"
sent=$(sed -n 's/^population: sent \([0-9]*\) .*/\1/p' "$dir/population.out")
first=$(sed -n 's/^first day: //p' "$dir/population.out")
wait_count "$sent" "$synthetic" || { echo "quickstart: the ingester stored only $(count "$synthetic") of $sent" >&2; exit 1; }
echo "quickstart: synthetic reports stored: $(count "$synthetic") (expected $sent)"

# Weekly snapshots from the first Sunday whose 28-day window is all population, served with
# the dashboard. --include-synthetic counts the population (stats leaves it out by default),
# and the page says so.
from=$(date -u -d "$first + 27 days" +%F)
"$bin/stats" --store "sqlite:$db" --out "$dir/stats" --backfill-from "$from" --include-synthetic --new-ledger \
  --listen "127.0.0.1:$stats_port" >"$dir/stats.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$stats_port/readyz" stats "$dir/stats.log" 120
snapshots=$(ls "$dir/stats/snapshots" | wc -l)
echo "quickstart: $snapshots weekly snapshots since $from in $dir/stats (synthetic data included)"
echo "quickstart: dashboard http://127.0.0.1:$stats_port/stats/"
if $once; then exit 0; fi
echo "quickstart: running (pids ${pids[*]}); logs in $dir. Ctrl-C to stop."
wait
