#!/usr/bin/env bash
# Same-run comparison on one box: the server (nginx `return 204`, then sluice with
# shards = 1) pinned to one core, the client (wrk, one thread) pinned to the other, the
# same pre-signed request mix for both. Prints the figures docs/PERFORMANCE.md records.
#
#   tuning/bench.sh [seconds] [connections]      (defaults: 5 s, 64 connections)
set -euo pipefail
seconds=${1:-5}
connections=${2:-64}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/sluice-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need nginx nginx-light
(cd "$root" && cargo build --release --quiet)
sluice="$root/target/release/sluice"

wrk_run() { # label url requests-file seconds
  taskset -c "$client_cpu" wrk -t1 -c"$connections" -d"$4"s --latency -s "$root/tuning/replay.lua" "$2" -- "$3" > "$work/$1.wrk"
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/$1.wrk")
  p50=$(awk '$1=="50%" {print $2}' "$work/$1.wrk")
  p99=$(awk '$1=="99%" {print $2}' "$work/$1.wrk")
  errors=$(awk '/Non-2xx|Socket errors/' "$work/$1.wrk" | tr '\n' ' ')
  printf '%-28s %12s req/s   p50 %-9s p99 %-9s %s\n' "$1" "$rps" "$p50" "$p99" "$errors"
  echo "$rps" > "$work/$1.rps"
}

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18080 reuseport;
    keepalive_requests 100000000;
    client_max_body_size 1m;
    location / { return 204; }
  }
}
NGINX

"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null
cat > "$work/sluice.toml" <<TOML
[ingest]
listen = "127.0.0.1:18081"
shards = 1
[storage]
data_dir = "$work/data"
durability = "${DURABILITY:-os}"
segment_bytes = 268435456
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18091"
TOML

single_count=$((150000 * seconds))
batch_count=6000
python3 "$root/tuning/gen_requests.py" --keys "$work/keys.toml" --out "$work/single.req" --count "$single_count"
python3 "$root/tuning/gen_requests.py" --keys "$work/keys.toml" --out "$work/batch.req" --count "$batch_count" --batch 100

echo "commit $(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet || echo '+dirty'), $(nproc) cores, kernel $(uname -r), ${seconds}s, ${connections} connections, server cpu $server_cpu, client cpu $client_cpu, durability ${DURABILITY:-os}"
taskset -c "$server_cpu" nginx -c "$work/nginx.conf" &
nginx_pid=$!
sleep 0.5
wrk_run nginx-204-single http://127.0.0.1:18080/v1/events "$work/single.req" "$seconds"
wrk_run nginx-204-batch100 http://127.0.0.1:18080/v1/events/batch "$work/batch.req" 3
kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true

taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" 2> "$work/sluice.err" &
sluice_pid=$!
for _ in $(seq 100); do grep -q listening "$work/sluice.err" 2>/dev/null && break; sleep 0.1; done
wrk_run sluice-single http://127.0.0.1:18081/v1/events "$work/single.req" "$seconds"
wrk_run sluice-batch100 http://127.0.0.1:18081/v1/events/batch "$work/batch.req" 3
metrics=$(curl -s http://127.0.0.1:18091/metrics)
accepted=$(echo "$metrics" | awk '/^sluice_events_accepted_total/ {s+=$2} END {print s}')
duplicates=$(echo "$metrics" | awk '/^sluice_events_duplicate_total/ {s+=$2} END {print s}')
rejected=$(echo "$metrics" | awk '/^sluice_events_rejected_total/ {s+=$2} END {print s}')
# RssAnon: resident memory that is not mapped log pages (those are page cache, VmRSS counts them).
rss=$(awk '/RssAnon/ {print $2, $3}' "/proc/$sluice_pid/status")
kill -TERM "$sluice_pid"; wait "$sluice_pid" 2>/dev/null || true

ratio=$(awk -v a="$(cat "$work/sluice-single.rps")" -v b="$(cat "$work/nginx-204-single.rps")" 'BEGIN {printf "%.2f", a / b}')
events=$(awk -v a="$(cat "$work/sluice-batch100.rps")" 'BEGIN {printf "%.0f", a * 100}')
echo "single-event ratio sluice/nginx: $ratio"
echo "batch-100 events/s stored by sluice: $events"
echo "sluice events: accepted $accepted, duplicate $duplicates, rejected $rejected; server RssAnon at end $rss"
