#!/usr/bin/env bash
# The memory soak of issue 12: sluice (shards = 1, embedded defaults otherwise: 64
# partitions, the default dedup window and ids_per_partition_max) pinned to one core,
# `sluice bench` pinned to the other, an open loop of single events with idle keep-alive
# connections held open, and the server's RssAnon / RssFile sampled once a second.
# Prints the samples at 0 %, 25 %, 50 %, 75 %, 100 % of the run, the peak, the events
# stored, the dedup tables' size on disk and the bytes per remembered id.
#
#   tuning/soak.sh                  300 s at 50,000 events/s with 10,000 idle connections
#   RATE=.. SECS=.. IDLE=.. SERVER_CPU=0 CLIENT_CPU=1 BENCH_DIR=.. tuning/soak.sh
set -euo pipefail

rate=${RATE:-50000}
secs=${SECS:-300}
idle=${IDLE:-10000}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-soak.XXXXXX)}
mkdir -p "$work"
server_pid=
cleanup() {
  [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

(cd "$root" && cargo build --release --locked --quiet)
sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null
cat > "$work/sluice.toml" <<TOML
[ingest]
listen = "127.0.0.1:18081"
shards = 1
connections_per_ip_max = 0
[storage]
data_dir = "$work/data"
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18091"
TOML
taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" 2> "$work/sluice.err" &
server_pid=$!
for _ in $(seq 300); do grep -q listening "$work/sluice.err" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/sluice.err" || { cat "$work/sluice.err" >&2; exit 1; }

(while kill -0 "$server_pid" 2>/dev/null; do
  awk '/^RssAnon/ {anon=$2} /^RssFile/ {file=$2} END {print anon, file}' "/proc/$server_pid/status" 2>/dev/null >> "$work/rss.log" || true
  sleep 1
done) &
commit="$(cd "$root" && git rev-parse --short HEAD)$(cd "$root" && git diff --quiet || echo '+dirty')"
echo "commit $commit; $(nproc) cores; kernel $(uname -r); data on $(df -T "$work" | awk 'NR==2 {print $2}'); server cpu $server_cpu, client cpu $client_cpu"
echo "open loop: $rate events/s for $secs s, $idle idle connections, 64 connections carrying the load"
taskset -c "$client_cpu" "$sluice" bench --keys-file "$work/keys.toml" --url http://127.0.0.1:18081 --connections 64 \
  --rate "$rate" --duration "$secs" --idle-connections "$idle" --json > "$work/bench.json"
python3 - "$work/bench.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
lat = r["latency_us"]
print(f"client: requests {r['requests']}, throughput {r['throughput']}, errors {r['errors']['total']}, "
      f"latency p50 {lat['p50']} us p99 {lat['p99']} us p99.9 {lat['p99_9']} us max {lat['max']} us")
PY
stored=$(curl -s http://127.0.0.1:18091/metrics | awk '/^sluice_partition_end_offset/ {s += $2} END {print s}')
kill -TERM "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
dedup_bytes=$(find "$work/data" -name 'dedup-*.idx' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
dedup_disk=$(find "$work/data" -name 'dedup-*.idx' -printf '%b\n' | awk '{s += $1 * 512} END {print s + 0}')
python3 - "$work/rss.log" "$stored" "$dedup_bytes" "$dedup_disk" <<'PY'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
stored, size, disk = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
n = len(rows)
for pct in (0, 25, 50, 75, 100):
    anon, file = rows[min(n - 1, pct * (n - 1) // 100)]
    print(f"  {pct:3d}%  RssAnon {anon / 1024:7.1f} MiB  RssFile {file / 1024:7.1f} MiB")
print(f"  peak RssAnon {max(r[0] for r in rows) / 1024:.1f} MiB over {n} samples")
print(f"events stored {stored}; dedup tables {size / 2**20:.1f} MiB ({disk / 2**20:.1f} MiB allocated), "
      f"{size / max(stored, 1):.1f} B per stored id")
PY
