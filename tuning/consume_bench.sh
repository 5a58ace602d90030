#!/usr/bin/env bash
# The consumer figures of docs/PERFORMANCE.md (issue 13), in one run: the server pinned
# to SERVER_CPU with one shard, every client pinned to CLIENT_CPU.
#
#  1. Read: one partition holding EVENTS events (warm in the page cache) read whole by
#     `sluice consume --topic` (partition reads of max=10000); events/s on the wall
#     clock and per second of server CPU. Reference in the same run: nginx sending the
#     same NDJSON bytes as one static file (sendfile) to the same kind of client: the
#     kernel-TCP ceiling for those bytes.
#  2. Readers beside ingest: the closed-loop single-event capacity, then an open loop at
#     half of it for OPEN_SECS without readers and again with a subscription streamed by
#     four `sluice consume --subscription` processes; ingest p99 of both, and the
#     subscription's lag (events, seconds) sampled every second.
#  3. Idle consumers: RssAnon of the server before and after IDLE_SSE idle SSE streams
#     and IDLE_POLLS idle long-polls; the difference per connection.
#
#   tuning/consume_bench.sh          (about 3 minutes)
#   ONLY=2 tuning/consume_bench.sh   one section (or ONLY=13, ...)
# Environment: EVENTS [2000000], OPEN_SECS [20], IDLE_SSE [1000], IDLE_POLLS [100],
#              SERVER_CPU [0], CLIENT_CPU [1], BENCH_DIR [mktemp under /var/tmp]
set -euo pipefail

events=${EVENTS:-2000000}
open_secs=${OPEN_SECS:-20}
idle_sse=${IDLE_SSE:-1000}
idle_polls=${IDLE_POLLS:-100}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-consume-bench.XXXXXX)}
mkdir -p "$work"
server_pid=
nginx_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -n "$nginx_pid" ]] && kill "$nginx_pid" 2>/dev/null
  pkill -f "sluice consume --url http://127.0.0.1:18082" 2>/dev/null || true
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need python3 python3
need taskset util-linux
need curl curl
(cd "$root" && cargo build --release --locked --quiet)
sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
commit=$(git -C "$root" rev-parse --short HEAD)
token=sltk_consume-bench-token-0123456789
sha=$(printf %s "$token" | sha256sum | cut -d' ' -f1)
"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null
cat >> "$work/keys.toml" <<KEYS

[[partners]]
name = "bench"
consume_topics = ["*"]

[[tokens]]
name = "bench-reader"
partner = "bench"
sha256 = "$sha"
KEYS

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status"; }

start_sluice() { # partitions
  rm -rf "$work/data"
  cat > "$work/sluice.toml" <<TOML
[ingest]
listen = "127.0.0.1:18082"
shards = 1
connections_per_ip_max = 0
[storage]
data_dir = "$work/data"
partitions = $1
segment_bytes = 67108864
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18092"
TOML
  taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" 2> "$work/sluice.err" &
  server_pid=$!
  for _ in $(seq 300); do grep -q listening "$work/sluice.err" 2>/dev/null && return; sleep 0.1; done
  cat "$work/sluice.err" >&2
  exit 1
}
stop_sluice() { kill -TERM "$server_pid"; wait "$server_pid" || true; server_pid=; }
bench() { taskset -c "$client_cpu" "$sluice" bench --keys-file "$work/keys.toml" --url http://127.0.0.1:18082 --json "$@"; }
# The server's own request-latency histogram (sluice_http_request_duration_seconds):
# a scrape to a file, and the p99 bucket bound of the difference of two scrapes.
scrape() { curl -s http://127.0.0.1:18092/metrics > "$1"; }
server_p99() {
  python3 - "$1" "$2" <<'PY'
import sys
def buckets(path):
    out = {}
    for line in open(path):
        if line.startswith("sluice_http_request_duration_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out[le] = out.get(le, 0) + float(line.rsplit(" ", 1)[1])
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
delta = sorted(((float("inf") if le == "+Inf" else float(le)), b[le] - a.get(le, 0)) for le in b)
total = delta[-1][1]
for bound, count in delta:
    if count >= 0.99 * total:
        print(round(bound * 1000, 3))
        break
PY
}
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

only=${ONLY:-123}
if [[ $only == *1* ]]; then
echo "== 1. read one warm partition (commit $commit)"
start_sluice 1
bench --batch 100 --connections 8 --requests $((events / 100)) --duration 200 > "$work/fill.json"
echo "   stored: $(field "$work/fill.json" "d['status'].get('200', 0) * 100") events"
# Warm: one pass first (page cache, the reader's cache), then the measured pass.
taskset -c "$client_cpu" "$sluice" consume --url http://127.0.0.1:18082 --token "$token" --topic events --partition 0 > "$work/all.ndjson"
lines=$(wc -l < "$work/all.ndjson")
bytes=$(stat -c %s "$work/all.ndjson")
before=$(cpu_ticks "$server_pid")
start=$(date +%s.%N)
taskset -c "$client_cpu" "$sluice" consume --url http://127.0.0.1:18082 --token "$token" --topic events --partition 0 > /dev/null
end=$(date +%s.%N)
after=$(cpu_ticks "$server_pid")
hz=$(getconf CLK_TCK)
read_secs=$(python3 -c "print($end - $start)")
server_secs=$(python3 -c "print(max(($after - $before) / $hz, 1 / $hz))")
read_rate=$(python3 -c "print(round($lines / $read_secs))")
per_core=$(python3 -c "print(round($lines / $server_secs))")
read_mbps=$(python3 -c "print(round($bytes / $read_secs / 1e6))")
echo "   $lines events, $bytes bytes in $read_secs s: $read_rate events/s ($read_mbps MB/s) wall; $per_core events per server CPU second"

# Reference: nginx sends the same bytes as one static file.
mkdir -p "$work/www"
cp "$work/all.ndjson" "$work/www/all.ndjson"
cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  server { listen 127.0.0.1:18083; root $work/www; }
}
NGINX
taskset -c "$server_cpu" nginx -c "$work/nginx.conf" &
nginx_pid=$!
sleep 0.5
taskset -c "$client_cpu" curl -s -o /dev/null http://127.0.0.1:18083/all.ndjson
start=$(date +%s.%N)
taskset -c "$client_cpu" curl -s -o /dev/null http://127.0.0.1:18083/all.ndjson
end=$(date +%s.%N)
kill "$nginx_pid"; nginx_pid=
nginx_mbps=$(python3 -c "print(round($bytes / ($end - $start) / 1e6))")
echo "   nginx static file, same bytes, curl: $nginx_mbps MB/s -> sluice at $(python3 -c "print(round($read_mbps / $nginx_mbps, 2))") x"
stop_sluice
fi

if [[ $only == *2* ]]; then
echo "== 2. four streams beside ingest at half capacity"
start_sluice 64
bench --connections 64 --duration 10 > "$work/capacity.json"
capacity=$(field "$work/capacity.json" "round(d['throughput']['requests_per_sec'])")
half=$((capacity / 2))
echo "   closed-loop capacity: $capacity req/s; open loop at $half req/s for $open_secs s"
# Server histogram over the measured part only: scraped after the warm-up.
bench --connections 64 --rate "$half" --warmup 2 --duration "$open_secs" > "$work/open-alone.json" &
bench_pid=$!
sleep 3; scrape "$work/m0"; wait "$bench_pid"; scrape "$work/m1"
alone_p99=$(field "$work/open-alone.json" "round(d['latency_us']['p99'] / 1000, 3)")
curl -s -X PUT http://127.0.0.1:18082/v1/subscriptions/bench -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"topics":["events"],"read_from":"latest"}' > /dev/null
for _ in 1 2 3 4; do
  # Lowest priority on the client core: the load generator must not be delayed by the
  # readers it shares the core with (its delays would show up as bursts at the server).
  nice -n 19 taskset -c "$client_cpu" "$sluice" consume --url http://127.0.0.1:18082 --token "$token" --subscription bench --batch-limit 500 > /dev/null &
done
sleep 1
(
  for _ in $(seq $((open_secs + 2))); do
    curl -s http://127.0.0.1:18082/v1/subscriptions/bench/stats -H "Authorization: Bearer $token" |
      python3 -c "import json,sys; rows=json.load(sys.stdin)['items']; print(sum(r['lag'] for r in rows), max(r['lag_seconds'] for r in rows))"
    sleep 1
  done
) > "$work/lag.log" &
lag_pid=$!
bench --connections 64 --rate "$half" --warmup 2 --duration "$open_secs" > "$work/open-readers.json" &
bench_pid=$!
sleep 3; scrape "$work/m2"; wait "$bench_pid"; scrape "$work/m3"
wait "$lag_pid" || true
pkill -f "sluice consume --url http://127.0.0.1:18082" || true
readers_p99=$(field "$work/open-readers.json" "round(d['latency_us']['p99'] / 1000, 3)")
max_lag=$(sort -n -k1 "$work/lag.log" | tail -1 | cut -d' ' -f1)
max_lag_secs=$(sort -g -k2 "$work/lag.log" | tail -1 | cut -d' ' -f2)
alone_server=$(server_p99 "$work/m0" "$work/m1")
readers_server=$(server_p99 "$work/m2" "$work/m3")
echo "   ingest p99 (client, same core as the 4 consumers) alone $alone_p99 ms, with 4 streams $readers_p99 ms"
echo "   ingest p99 (server histogram bucket bound) alone $alone_server ms, with 4 streams $readers_server ms"
echo "   max lag $max_lag events, ${max_lag_secs} s"
stop_sluice
fi

if [[ $only == *3* ]]; then
echo "== 3. idle consumers"
start_sluice 64
curl -s -X PUT http://127.0.0.1:18082/v1/subscriptions/idle -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' -d '{"topics":["events"]}' > /dev/null
sleep 1
idle_round() { # prints RssAnon (kB) once the idle consumers are open; they stay 20 s
  rm -f "$work/idle.ready"
  python3 - "$idle_sse" "$idle_polls" "$token" "$work/idle.ready" <<'PY' &
import socket, sys, time
sse, polls, token, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
held = []
for i in range(sse + polls):
    s = socket.create_connection(("127.0.0.1", 18082))
    if i < sse:
        path = f"/v1/topics/events/sse?key=user-{i}"
    else:
        path = f"/v1/topics/events/partitions/{i % 64}/events?from=latest&wait_ms=30000"
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    held.append(s)
time.sleep(2)
open(ready, "w").write("ok")
time.sleep(20)
PY
  idle_pid=$!
  for _ in $(seq 100); do [[ -f "$work/idle.ready" ]] && break; sleep 0.2; done
  sleep 1
  rss_kb "$server_pid"
  kill "$idle_pid" 2>/dev/null || true
  wait "$idle_pid" 2>/dev/null || true
  sleep 1
}
rss_before=$(rss_kb "$server_pid")
rss_first=$(idle_round)
rss_closed=$(rss_kb "$server_pid")
rss_second=$(idle_round)
count=$((idle_sse + idle_polls))
per_conn=$(python3 -c "print(round(($rss_first - $rss_before) * 1024 / $count))")
per_conn_steady=$(python3 -c "print(round(($rss_second - $rss_closed) * 1024 / $count))")
echo "   RssAnon $rss_before kB -> $rss_first kB with $idle_sse SSE + $idle_polls long-polls: $per_conn bytes each (first time: buffers and allocator growth kept after they close)"
echo "   closed: $rss_closed kB; the same again: $rss_second kB: $per_conn_steady bytes each on a warm server"
stop_sluice
fi

echo
echo "Rows for docs/PERFORMANCE.md (commit $commit):"
[[ $only == *1* ]] && echo "| read one warm partition | $read_rate events/s wall ($read_mbps MB/s), $per_core events/s per server CPU | nginx static file of the same bytes $nginx_mbps MB/s | $(python3 -c "print(round($read_mbps / $nginx_mbps, 2))") x |"
[[ $only == *2* ]] && echo "| ingest at $half req/s (half of $capacity) | client p99 $alone_p99 ms alone, $readers_p99 ms with 4 streams; server p99 bucket $alone_server ms alone, $readers_server ms with | max lag $max_lag events / ${max_lag_secs} s | |"
[[ $only == *3* ]] && echo "| idle consumers | $per_conn bytes each first, $per_conn_steady bytes each on a warm server ($idle_sse SSE + $idle_polls long-polls) | | |"
