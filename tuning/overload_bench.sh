#!/usr/bin/env bash
# Issue 16's overload targets, on one box: the server (shards = 1) pinned to SERVER_CPU,
# every client to CLIENT_CPU. Not run by CI. Prints what docs/PERFORMANCE.md § Overload
# records.
#
#   tuning/overload_bench.sh slow-body [BUDGET_BYTES]   2000 clients each send all but one
#       byte of a 512 KiB body and stall (tuning/slow_body.py) while `sluice bench` sends
#       single events at 10k/s: refusals, the server's RssAnon (before, peak, after), and
#       the normal clients' answers. BUDGET_BYTES: [limits] memory_bytes_max (0: default).
#   tuning/overload_bench.sh handshakes                  bursts of 2000 parallel TLS
#       handshakes (tuning/handshake_burst.py) against the shard's TLS listener while
#       `sluice bench` sends single events at 5k/s on its plaintext listener and probes
#       its plaintext /healthz every 5 ms: their latency, and the handshake rate.
#   tuning/overload_bench.sh speed                       the speed targets against nginx
#       `return 204` (same client, same run): single events closed loop in comparison mode
#       (ROUNDS rounds, ratio sluice / nginx), batches of 100 closed loop, and an open loop
#       at OPEN_RATE [100000] req/s for OPEN_SECS [30] s beside IDLE [10000] idle
#       connections, started right after sluice (its first 5 s are in the timeline).
#   tuning/overload_bench.sh overload                    capacity C (closed loop), then an
#       open loop at OVERLOAD x C for OVERLOAD_SECS with half the requests of an optional
#       topic, probing the admin /healthz every 10 ms, then RECOVER_SECS at C/2: accepted
#       rate per class, the probe's latency, per-second p99 after the overload, RssAnon,
#       and acknowledged events against stored ones.
#
# Environment: SERVER_CPU [0], CLIENT_CPU [1], CONNECTIONS [64], OVERLOAD [2],
# OVERLOAD_SECS [60], RECOVER_SECS [10], HANDSHAKES [2000], ROUNDS [5], SERVER_BIN [this
# build's sluice] (the server only, e.g. an older build for a before/after run), HELLOS
# [unset; set: the bursts send pre-made ClientHellos all at once, handshake_burst.py --hellos].
set -euo pipefail

mode=${1:-}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
connections=${CONNECTIONS:-64}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/sluice-overload.XXXXXX)
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need python3 python3
need taskset util-linux
need openssl openssl
need curl curl
(cd "$root" && cargo build --release --locked --quiet)
sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
server_bin=${SERVER_BIN:-$sluice}   # another build's server against the same client (before/after)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null

start_sluice() { # extra TOML
  rm -rf "$work/data"
  cat >"$work/sluice.toml" <<TOML
[ingest]
listen = "127.0.0.1:18081"
shards = 1
connections_per_ip_max = 0
[storage]
data_dir = "$work/data"
segment_bytes = 67108864
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18091"
$1
TOML
  taskset -c "$server_cpu" "$server_bin" serve --config "$work/sluice.toml" 2>"$work/sluice.err" &
  server_pid=$!
  for _ in $(seq 300); do grep -q listening "$work/sluice.err" 2>/dev/null && return; sleep 0.1; done
  cat "$work/sluice.err" >&2
  exit 1
}
stop_server() { kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
bench() { taskset -c "$client_cpu" "$sluice" bench --keys-file "$work/keys.toml" --url http://127.0.0.1:18081 "$@"; }
metric() { curl -s http://127.0.0.1:18091/metrics | awk -v name="$1" '$1 == name { print $2 }'; }
turns() { # the shard's loop turns by duration, since it started
  curl -s http://127.0.0.1:18091/metrics | python3 -c '
import sys
buckets = {}
for line in sys.stdin:
    if line.startswith("sluice_shard_loop_turn_seconds_bucket{shard=\"0\""):
        le = line.split("le=\"")[1].split("\"")[0]
        buckets[le] = int(float(line.rsplit(" ", 1)[1]))
total = buckets["+Inf"]
over = lambda le: total - buckets[le]
longer = ", ".join(f"{label}: {over(le):,}" for label, le in (("1 ms", "0.001"), ("2 ms", "0.002"), ("5 ms", "0.005"), ("10 ms", "0.01"), ("50 ms", "0.05")))
print(f"  shard loop turns: {total:,}; longer than {longer}")'
}
rss_kib() { awk '/^RssAnon:/ { print $2 }' "/proc/$server_pid/status"; }

case $mode in
speed)
  need nginx nginx-light
  cat >"$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 16384; }
http { access_log off; server { listen 127.0.0.1:18080 reuseport; keepalive_requests 100000000; location / { return 204; } } }
NGINX
  taskset -c "$server_cpu" nginx -c "$work/nginx.conf" &
  nginx_pid=$!
  start_sluice ""
  bench --connections "$connections" --duration 10 --warmup 2 --compare-url http://127.0.0.1:18080/v1/events --rounds "${ROUNDS:-2}"
  bench --connections 16 --batch 100 --duration 10 --warmup 2 --requests 150000 --json >"$work/batch.json" 2>/dev/null
  python3 "$root/tuning/bench_report.py" row "$work/batch.json" "sluice batch of 100"
  stop_server
  start_sluice ""
  bench --connections "$connections" --rate "${OPEN_RATE:-100000}" --duration "${OPEN_SECS:-30}" \
    --idle-connections "${IDLE:-10000}" --timeline --json >"$work/open.json" 2>/dev/null
  python3 "$root/tuning/bench_report.py" row "$work/open.json" "sluice open loop"
  python3 - "$work/open.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
print("  per-second p99 (us):", [second["p99_us"] for second in run["timeline"]])
print(f"  idle connections: {run['idle']}")
PY
  kill "$nginx_pid"
  ;;
slow-body)
  start_sluice "[limits]
memory_bytes_max = ${2:-0}"
  bench --connections 32 --rate 10000 --duration 12 --json >"$work/normal.json" 2>/dev/null &
  bench_pid=$!
  sleep 0.5
  taskset -c "$client_cpu" nice -n 19 python3 "$root/tuning/slow_body.py" 127.0.0.1:18081 --connections 2000 --hold 10 --pid "$server_pid"
  wait "$bench_pid"
  python3 "$root/tuning/bench_report.py" row "$work/normal.json" "normal clients"
  [[ -n "${SERVER_BIN:-}" ]] || turns
  echo "budget $(metric sluice_memory_budget_bytes) bytes, peak use $(metric sluice_memory_used_peak_bytes), bodies refused $(metric sluice_memory_refused_total)"
  ;;
handshakes)
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  start_sluice "[ingest.tls]
listen = \"127.0.0.1:18443\"
cert_file = \"$work/cert.pem\"
key_file = \"$work/key.pem\""
  secs=$(( ${ROUNDS:-5} * 3 + 4 ))
  bench --connections 16 --rate 5000 --duration "$secs" --probe http://127.0.0.1:18081/healthz --probe-every 5 --timeline --json >"$work/plain.json" 2>/dev/null &
  bench_pid=$!
  sleep 2
  taskset -c "$client_cpu" nice -n 19 python3 "$root/tuning/handshake_burst.py" 127.0.0.1:18443 --ca "$work/cert.pem" \
    --handshakes "${HANDSHAKES:-2000}" --rounds "${ROUNDS:-5}" --pause 1 ${HELLOS:+--hellos}
  wait "$bench_pid"
  python3 "$root/tuning/bench_report.py" row "$work/plain.json" "plaintext events"
  python3 - "$work/plain.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
probe = run["probe"]["latency_us"]
print(f"  plaintext /healthz probe: {run['probe']['answered']} answered, p50 {probe['p50']:,.0f} p99 {probe['p99']:,.0f} max {probe['max']:,.0f} us")
PY
  echo "handshakes completed $(metric 'sluice_tls_handshakes_total{shard="0"}'), deferred steps $(metric 'sluice_tls_handshakes_deferred_total{shard="0"}')"
  [[ -n "${SERVER_BIN:-}" ]] || turns
  # The shard's handshake cost alone: server CPU time (utime + stime of the process) over
  # bursts with nothing else running, per handshake; its inverse is the rate one shard
  # can sustain.
  ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }
  before=$(ticks)
  taskset -c "$client_cpu" python3 "$root/tuning/handshake_burst.py" 127.0.0.1:18443 --ca "$work/cert.pem" \
    --handshakes "${HANDSHAKES:-2000}" --rounds 3 --pause 0 >/dev/null
  after=$(ticks)
  python3 -c 'import os, sys
ticks = int(sys.argv[2]) - int(sys.argv[1])
handshakes = 3 * int(sys.argv[3])
per = ticks / os.sysconf("SC_CLK_TCK") / handshakes
print(f"  server CPU per TLS 1.3 handshake (P-256): {per * 1e6:,.0f} us over {handshakes} handshakes, so about {1 / per:,.0f} handshakes/s per shard")' \
    "$before" "$after" "${HANDSHAKES:-2000}"
  ;;
overload)
  start_sluice "[[topics]]
name = \"telemetry\"
event_types = [\"telemetry\"]
optional = true
[[topics]]
name = \"events\"
event_types = [\"*\"]"
  bench --connections "$connections" --duration 10 --warmup 2 --json >"$work/capacity.json" 2>/dev/null
  capacity=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["throughput"]["requests_per_sec"]))' "$work/capacity.json")
  rate=$(( capacity * ${OVERLOAD:-2} ))
  echo "capacity (closed loop, $connections connections): $capacity req/s; overload at $rate req/s for ${OVERLOAD_SECS:-60} s"
  rss_before=$(rss_kib)
  bench --connections 512 --rate "$rate" --duration "${OVERLOAD_SECS:-60}" --optional-ratio 0.5 --timeout 30 \
    --probe http://127.0.0.1:18091/healthz --probe-every 10 --json >"$work/overload.json" 2>/dev/null
  rss_after=$(rss_kib)
  turns
  bench --connections "$connections" --rate $(( capacity / 2 )) --duration "${RECOVER_SECS:-10}" --json >"$work/recover.json" 2>/dev/null
  sleep 1
  accepted=$(curl -s http://127.0.0.1:18091/metrics | awk '$1 ~ /^sluice_events_accepted_total/ { sum += $2 } END { print sum }')
  stop_server
  stored=$("$sluice" tail --data-dir "$work/data" --from earliest 2>/dev/null | wc -l)
  python3 - "$work/capacity.json" "$work/overload.json" "$work/recover.json" "$rss_before" "$rss_after" "$stored" "$accepted" <<'PY'
import json, sys
capacity, overload, recover = (json.load(open(path)) for path in sys.argv[1:4])
rss_before, rss_after, stored, accepted = int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), int(float(sys.argv[7]))
cap = capacity["throughput"]["requests_per_sec"]
for name in ("critical", "optional"):
    c = overload["classes"][name]
    lat = c["latency_us"]
    print(f"  {name:<9} sent {c['sent']:>9,}  accepted {c['accepted']:>9,} ({c['accepted_per_sec']:>9,.0f}/s = {c['accepted_per_sec'] / cap:.2f} x capacity)"
          f"  503 {c['refused_503']:>9,}  429 {c['refused_429']:>6,}  other {c['refused_other']:>6,}  unanswered {c['unanswered']:>6,}"
          f"  p50 {lat['p50']:,.0f} p99 {lat['p99']:,.0f} us")
probe = overload["probe"]
print(f"  admin /healthz probe: {probe['answered']} answered, {probe['failed']} failed, {probe['timeouts']} timeouts,"
      f" p99 {probe['latency_us']['p99']:,.0f} us, max {probe['latency_us']['max']:,.0f} us")
steady = recover["timeline"][5:]
print("  after the overload, per-second p99 (us):", [second["p99_us"] for second in recover["timeline"]])
print(f"  events acknowledged 202 by the server {accepted:,}; stored and read back after a clean stop {stored:,}"
      f" ({'none lost' if stored == accepted else 'MISMATCH'})")
print(f"  RssAnon before the overload {rss_before:,} KiB, after {rss_after:,} KiB")
PY
  ;;
*)
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
  ;;
esac
