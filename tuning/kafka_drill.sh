#!/usr/bin/env bash
# The box-loss drill of docs/MULTI_REGION.md: one "box" (sluice serve on SERVER_CPU, its
# Kafka bridge on CLIENT_CPU) takes RATE single events/s from `sluice bench` against a
# local broker (tansu, memory storage, CLIENT_CPU); after KILL_AFTER seconds both
# processes get kill -9. Then, as a replacement box would with the dead box's disk, a
# new `serve` and a new bridge (same data dir, same transactional id) start.
#
# It reports:
#  - acked: events the producer got a 2xx for;
#  - in Kafka at the kill: committed records then (what survives if the disk is lost:
#    the RPO of a box whose disk dies with it);
#  - in Kafka after recovery, against acked and against what the log holds;
#  - the recovery times: replacement `serve` ready, bridge connected (resumed after its
#    committed progress), lag drained.
#
#   tuning/kafka_drill.sh          (about 1 minute)
# Environment: RATE [20000], KILL_AFTER [10], SERVER_CPU [0], CLIENT_CPU [1],
#              BENCH_DIR [mktemp under /var/tmp]
set -euo pipefail

rate=${RATE:-20000}
kill_after=${KILL_AFTER:-10}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-kafka-drill.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

# shellcheck source=tuning/kafka_common.sh
source "$root/tuning/kafka_common.sh"
kafka_build
kafka_venv drill-python kafka-python==3.0.12 zstandard==0.25.0
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$(now)"; }

kafka_broker "$client_cpu"
ingest_port=$(free_port); admin_port=$(free_port); metrics_port=$(free_port)
cat > "$work/sluice.toml" <<CONFIG
[ingest]
listen = "127.0.0.1:$ingest_port"
shards = 1
[admin]
listen = "127.0.0.1:$admin_port"
[storage]
data_dir = "$work/data"
partitions = 8
[bridge.kafka]
brokers = "127.0.0.1:$broker_port"
topic_prefix = "drill."
transactional_id = "drill-box-1"
create_topics = true
replication_factor = 1
metrics_listen = "127.0.0.1:$metrics_port"
[bridge.kafka.topic_config]
CONFIG

start_box() {
  taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" >>"$work/serve.log" 2>&1 &
  serve_pid=$!; pids+=("$serve_pid")
  until curl -sf "http://127.0.0.1:$admin_port/readyz" >/dev/null 2>&1; do sleep 0.01; done
  serve_ready=$(now)
  taskset -c "$client_cpu" "$sluice" --log-format text bridge kafka --config "$work/sluice.toml" >>"$work/bridge.log" 2>&1 &
  bridge_pid=$!; pids+=("$bridge_pid")
}
metric_sum() { curl -s "http://127.0.0.1:$metrics_port/metrics" | awk -v m="$1" '$1 ~ "^"m"({|$)" {s+=$2; n++} END {if (n) print s; else print "none"}'; }
kafka_count() {
  "$venv/bin/python" "$root/tests/support/kafka/read_committed.py" "127.0.0.1:$broker_port" drill.events 120 \
    | "$venv/bin/python" -c 'import json, sys; ids = [dict(json.loads(l)["headers"])["event-id"] for l in sys.stdin]; print(len(ids), len(set(ids)))'
}

echo "sluice kafka drill: commit $commit, $(nproc) CPUs, $rate events/s, kill -9 after $kill_after s, $(date -u +%FT%TZ)"
start_box
for _ in $(seq 200); do grep -q "connected to Kafka" "$work/bridge.log" && break; sleep 0.05; done
taskset -c "$client_cpu" "$sluice" bench --url "http://127.0.0.1:$ingest_port" --keys-file "$work/data/dev-keys.toml" \
  --rate "$rate" --duration "$((kill_after + 3))" --connections 32 --users 100000 --timeout 2 --max-error-ratio 1 --json \
  >"$work/load.json" 2>"$work/load.log" &
load_pid=$!
sleep "$kill_after"
kill -9 "$serve_pid" "$bridge_pid"
wait "$serve_pid" "$bridge_pid" 2>/dev/null || true
wait "$load_pid" || true
read -r at_kill _ < <(kafka_count)
acked=$(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))["status"]; print(sum(v for k, v in s.items() if k.startswith("2")))' "$work/load.json")

# The replacement: same disk, same transactional id.
replace_start=$(now)
start_box
serve_secs=$(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.2f}')" "$serve_ready" "$replace_start")
until grep -q "connected to Kafka" <(tail -n 5 "$work/bridge.log"); do sleep 0.01; done
resumed=$(since "$replace_start")
until [[ "$(metric_sum sluice_bridge_lag_events)" == "0" ]]; do sleep 0.05; done
drained=$(since "$replace_start")
read -r after after_distinct < <(kafka_count)
stored=$("$sluice" tail --config "$work/sluice.toml" | wc -l)
python3 - "$acked" "$at_kill" "$after" "$after_distinct" "$stored" "$serve_secs" "$resumed" "$drained" "$rate" <<'PY'
import sys
acked, at_kill, after, distinct, stored = map(int, sys.argv[1:6])
serve_s, resumed_s, drained_s, rate = sys.argv[6], sys.argv[7], sys.argv[8], int(sys.argv[9])
print(f"acked {acked:,} events; stored {stored:,} (acked plus any stored whose answer the kill cut off)")
print(f"in Kafka at the kill: {at_kill:,} = {100 * at_kill / max(acked, 1):.2f} % of acked "
      f"(behind by {acked - at_kill:,} events = {(acked - at_kill) / rate:.2f} s of load)")
print(f"in Kafka after recovery: {after:,} records, {distinct:,} distinct event ids = {100 * distinct / max(acked, 1):.2f} % of acked; "
      f"{'every stored event once' if after == distinct == stored else 'MISMATCH with the log'}")
print(f"replacement: serve ready in {serve_s} s, bridge resumed in {resumed_s} s, lag drained in {drained_s} s")
PY
