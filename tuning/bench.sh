#!/usr/bin/env bash
# The table in docs/PERFORMANCE.md, in one run on one box: the server (nginx `return 204`,
# then sluice with shards = 1) pinned to one core, the client (`sluice bench`, one
# thread) pinned to the other, the same pre-signed request mix for both. Each figure is
# checked against issue 3's targets and the lines to paste into docs/PERFORMANCE.md are
# printed at the end.
#
#   tuning/bench.sh            full run (about 5 minutes)
#   tuning/bench.sh --quick    3 s per step, 10 s open loop, no idle connections (smoke test)
#   tuning/bench.sh --tls      only the TLS section: plaintext and TLS side by side on one
#                              server (closed loop, and open loop at TLS_RATE), and nginx
#
# Environment (defaults in brackets):
#   DURATION [10]         seconds per closed-loop step
#   CONNECTIONS [64]      keep-alive connections carrying the load
#   OPEN_RATE [100000]    open-loop rate for the latency target (events/s, single events)
#   OPEN_SECS [30]        open-loop length (the target asks for at least 30 s)
#   FSYNC_RATE [50000]    open-loop rate for the fsync latency target
#   TLS_RATE [50000]      open-loop rate of the TLS comparison (plaintext and TLS)
#   IDLE [10000]          idle keep-alive connections held during the os open loop
#   SOAK_SECS [0]         > 0: also run the open loop this long and sample memory (300 = the 5-minute target)
#   SERVER_CPU [0], CLIENT_CPU [1]
#   BENCH_DIR [mktemp under /var/tmp]  where the data directories go (use the disk you care about;
#                         a loaded data dir reserves up to 8 GiB here: 64 partitions x active + spare
#                         x 64 MiB once every partition's segments have grown to segment_bytes)
set -euo pipefail

quick=0 tls_only=0
[[ "${1:-}" == "--quick" ]] && quick=1
[[ "${1:-}" == "--tls" ]] && tls_only=1
duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
open_rate=${OPEN_RATE:-100000}
open_secs=${OPEN_SECS:-30}
fsync_rate=${FSYNC_RATE:-50000}
tls_rate=${TLS_RATE:-50000}
idle=${IDLE:-10000}
soak_secs=${SOAK_SECS:-0}
if ((quick)); then duration=3 open_secs=10 idle=0 soak_secs=0; fi
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-bench.XXXXXX)}
mkdir -p "$work"
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need python3 python3
need taskset util-linux
need openssl openssl
(cd "$root" && cargo build --release --locked --quiet)
sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
# The server holds every connection: 64 + 10,000 idle + listeners and segments.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null

client() { # label, then sluice bench arguments
  local label=$1
  shift
  taskset -c "$client_cpu" "$sluice" bench --keys-file "$work/keys.toml" --connections "$connections" --json "$@" > "$work/$label.json"
  python3 "$root/tuning/bench_report.py" row "$work/$label.json" "$label"
}

rss_sampler() { # pid, file: RssAnon in kB once a second while the process lives
  while kill -0 "$1" 2>/dev/null; do
    awk '/^RssAnon/ {print $2}' "/proc/$1/status" 2>/dev/null >> "$2" || true
    sleep 1
  done
}

start_nginx() {
  cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
worker_rlimit_nofile 65536;
events { worker_connections 16384; }
http {
  access_log off;
  server {
    listen 127.0.0.1:18080 reuseport backlog=4096;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    client_max_body_size 1m;
    location / { return 204; }
  }
}
NGINX
  taskset -c "$server_cpu" nginx -c "$work/nginx.conf" &
  server_pid=$!
  sleep 0.5
}

make_certificates() { # a CA and a server certificate for localhost / 127.0.0.1 it signs
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" \
    -days 2 -subj /CN=sluice-bench-ca 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/server.key" -out "$work/server.csr" \
    -subj /CN=localhost 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$work/server.ext"
  openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -days 2 \
    -extfile "$work/server.ext" -out "$work/server.pem" 2>/dev/null
}

start_sluice() { # durability [tls]: the TLS listener (127.0.0.1:18443) only when asked
  rm -rf "$work/data-$1"
  local tls_table=
  [[ "${2:-}" == tls ]] && tls_table="[ingest.tls]
listen = \"127.0.0.1:18443\"
cert_file = \"$work/server.pem\"
key_file = \"$work/server.key\""
  cat > "$work/sluice-$1.toml" <<TOML
[ingest]
listen = "127.0.0.1:18081"
shards = 1
# The bench holds 10,000 idle connections from 127.0.0.1.
connections_per_ip_max = 0
$tls_table
[storage]
data_dir = "$work/data-$1"
durability = "$1"
segment_bytes = 67108864
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18091"
TOML
  taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice-$1.toml" 2> "$work/sluice-$1.err" &
  server_pid=$!
  for _ in $(seq 300); do grep -q listening "$work/sluice-$1.err" 2>/dev/null && return; sleep 0.1; done
  echo "sluice did not start:" >&2
  cat "$work/sluice-$1.err" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=
  # A loaded data dir holds up to 64 partitions x (active + spare) x 64 MiB = 8 GiB of disk.
  rm -rf "$work"/data-*
}

scrape() { # label: the server's counters after its runs
  curl -s http://127.0.0.1:18091/metrics > "$work/$1.metrics" || true
}

commit="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$root" && git diff --quiet 2>/dev/null || echo '+dirty')"
cpu_model=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
fs=$(df -T "$work" | awk 'NR==2 {print $2}')
echo "commit $commit; $(nproc) cores ($cpu_model); kernel $(uname -r); data on $fs; server cpu $server_cpu, client cpu $client_cpu; $connections connections"
echo

echo "== nginx return 204 (the do-nothing ceiling)"
start_nginx
client nginx-single --url http://127.0.0.1:18080/v1/events --duration "$duration"
stop_server

tls_section() {
  echo "== sluice, durability os, plaintext and TLS listeners on one server (TLS 1.3, P-256 certificate)"
  make_certificates
  start_sluice os tls
  local tls_args=(--url https://127.0.0.1:18443 --server-name localhost --ca-file "$work/ca.pem")
  client plain-single --url http://127.0.0.1:18081 --duration "$duration"
  client tls-single "${tls_args[@]}" --duration "$duration"
  client plain-open --url http://127.0.0.1:18081 --rate "$tls_rate" --warmup 2 --duration "$open_secs"
  client tls-open "${tls_args[@]}" --rate "$tls_rate" --warmup 2 --duration "$open_secs"
  scrape sluice-tls
  stop_server
}

if ((tls_only)); then
  tls_section
  echo
  python3 "$root/tuning/bench_report.py" tls "$work" "$commit" "$tls_rate"
  exit 0
fi

echo "== sluice, durability os"
start_sluice os
rss_sampler "$server_pid" "$work/rss-os.log" &
client sluice-single --url http://127.0.0.1:18081 --duration "$duration"
client sluice-batch100 --url http://127.0.0.1:18081 --batch 100 --requests $((15000 * duration)) --duration "$duration"
idle_args=()
((idle > 0)) && idle_args=(--idle-connections "$idle")
client sluice-open --url http://127.0.0.1:18081 --rate "$open_rate" --warmup 2 --duration "$open_secs" "${idle_args[@]}" --svg "$work/sluice-open.svg"
scrape sluice-os
stop_server

if ((soak_secs > 0)); then
  echo "== sluice, durability os, ${soak_secs} s soak at $open_rate/s with $idle idle connections"
  start_sluice os
  rss_sampler "$server_pid" "$work/rss-soak.log" &
  client sluice-soak --url http://127.0.0.1:18081 --rate "$open_rate" --duration "$soak_secs" "${idle_args[@]}"
  scrape sluice-soak
  stop_server
fi

echo "== sluice, durability fsync (group commit)"
start_sluice fsync
client sluice-fsync-single --url http://127.0.0.1:18081 --duration "$duration"
client sluice-fsync-open --url http://127.0.0.1:18081 --rate "$fsync_rate" --warmup 2 --duration "$open_secs" --fsync-probe "$work/data-fsync" --fsync-probe-secs 5
scrape sluice-fsync
stop_server

tls_section

echo
python3 "$root/tuning/bench_report.py" summary "$work" "$commit" "$open_rate" "$fsync_rate" "$idle" "$soak_secs" "$tls_rate"
