#!/usr/bin/env bash
# Issue 15's throughput target: single events, closed loop, one schema per event type
# (bet, win, deposit: the types `sluice bench` sends) against no schemas, in one run on
# one box; nginx `return 204` with the same client as the do-nothing ceiling. The server
# (shards = 1) is pinned to one core, the client (`sluice bench`) to the other. Prints
# the rows for docs/PERFORMANCE.md and the ratio schemas / no schemas.
#
#   tuning/schema_bench.sh           (about 1 minute)
#
# Environment: DURATION [10] seconds per step, CONNECTIONS [64], EVENT_BYTES [500],
# ROUNDS [2] alternations of no-schemas / schemas, SERVER_CPU [0], CLIENT_CPU [1].
set -euo pipefail

duration=${DURATION:-10}
connections=${CONNECTIONS:-64}
event_bytes=${EVENT_BYTES:-500}
rounds=${ROUNDS:-2}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /var/tmp/sluice-schema-bench.XXXXXX)
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
  return 0
}
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need nginx nginx-light
need python3 python3
need taskset util-linux
(cd "$root" && cargo build --release --locked --quiet)
sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null

client() { # label, url
  taskset -c "$client_cpu" "$sluice" bench --keys-file "$work/keys.toml" --connections "$connections" --event-bytes "$event_bytes" \
    --url "$2" --duration "$duration" --json > "$work/$1.json"
  python3 "$root/tuning/bench_report.py" row "$work/$1.json" "$1"
}

cat > "$work/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:18080 reuseport; keepalive_requests 100000000; location / { return 204; } } }
NGINX

start_sluice() { # label
  rm -rf "$work/data"
  cat > "$work/sluice.toml" <<TOML
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
TOML
  taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" 2> "$work/sluice-$1.err" &
  server_pid=$!
  for _ in $(seq 300); do grep -q listening "$work/sluice-$1.err" 2>/dev/null && return; sleep 0.1; done
  cat "$work/sluice-$1.err" >&2
  exit 1
}

stop_server() { kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

register_schemas() { # one schema per type, shaped like the bench event (bounds, enum, pattern, format)
  for type in bet win deposit; do
    cat > "$work/$type.json" <<JSON
{"type":"object","required":["event_id","event_type","occurred_at","key","payload"],
 "properties":{"event_id":{"type":"string","maxLength":128},"event_type":{"const":"$type"},"schema_version":{"type":"string"},
  "occurred_at":{"type":"string","format":"date-time"},
  "key":{"type":"object","required":["user_id"],"properties":{"user_id":{"type":"string","pattern":"^u_[0-9]+$"}}},
  "ctx":{"type":"object","properties":{"platform":{"enum":["ios","android","web"]},"geo":{"type":"string","minLength":2,"maxLength":2}}},
  "payload":{"type":"object","required":["game_id","bet","currency"],"properties":{"game_id":{"type":"string"},
   "bet":{"type":"number","minimum":0},"win":{"type":"number","minimum":0},"currency":{"type":"string","pattern":"^[A-Z]{3}$"},"provider":{"type":"string"}}}}}
JSON
    "$sluice" schema --admin 127.0.0.1:18091 add "$type" 1.3.0 "$work/$type.json" >/dev/null
  done
}

commit=$(git -C "$root" rev-parse --short HEAD)
echo "commit $commit; $(nproc) cores; server cpu $server_cpu, client cpu $client_cpu; $connections connections; $event_bytes B events; $duration s per step"
taskset -c "$server_cpu" nginx -c "$work/nginx.conf" & server_pid=$!
sleep 0.5
client nginx-single http://127.0.0.1:18080/v1/events
stop_server
for round in $(seq "$rounds"); do
  start_sluice none
  client "no-schemas-$round" http://127.0.0.1:18081
  stop_server
  start_sluice schemas
  register_schemas
  client "schemas-$round" http://127.0.0.1:18081
  stop_server
done
python3 - "$work" "$rounds" <<'PY'
import json, sys
work, rounds = sys.argv[1], int(sys.argv[2])
def rate(label):
    return float(json.load(open(f"{work}/{label}.json"))["throughput"]["requests_per_sec"])
nginx = rate("nginx-single")
plain = [rate(f"no-schemas-{r}") for r in range(1, rounds + 1)]
checked = [rate(f"schemas-{r}") for r in range(1, rounds + 1)]
p, c = sum(plain) / len(plain), sum(checked) / len(checked)
print(f"nginx {nginx:,.0f} req/s; no schemas {p:,.0f} req/s ({p/nginx:.2f} x nginx); schemas {c:,.0f} req/s ({c/nginx:.2f} x nginx)")
print(f"schemas / no schemas = {c/p:.3f} (drop {100*(1-c/p):.1f} %; target: drop <= 10 %)")
PY
