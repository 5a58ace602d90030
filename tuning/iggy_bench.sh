#!/usr/bin/env bash
# Issue 16: Apache Iggy's HTTP produce API next to sluice on this box, the way
# tuning/bench.sh measures sluice: the server on SERVER_CPU, the load client (`sluice bench`)
# on CLIENT_CPU, single events and batches of 100 (~330-byte events, keyed by user_id).
# NOT run by CI: it builds a second project from source (tens of minutes on 2 cores) and
# needs root for apt-get.
#
#   tuning/iggy_bench.sh IGGY_SRC           build, start Iggy (one shard, pinned), log in, create
#                                           the stream and topic, write the request files, check
#                                           them with curl, then the load (see LOAD below)
#   tuning/iggy_bench.sh IGGY_SRC --serve   the same up to the curl check, then keep Iggy
#                                           running (and the request files in place) until Ctrl-C
#
# IGGY_SRC (the argument, or the environment variable of that name) is a checkout of the
# apache/iggy repository that the operator cloned there; this script never fetches, vendors
# or edits it, and nothing of it is copied into sluice. Prepared against server 0.9.0-edge.5
# (commit cc269ef70, built with Rust 1.95.0 although its rust-toolchain.toml asks for 1.97.1:
# its rust-version is 1.95, so the toolchain is overridden with RUSTUP_TOOLCHAIN below).
#
# Requirements: Debian, root (apt-get installs build-essential pkg-config libhwloc-dev
# libudev-dev curl python3 util-linux when missing), a Rust toolchain >= 1.95 under rustup,
# 2 cores. The Iggy build runs under `nice -n 19` with IGGY_BUILD_JOBS jobs so it does not
# starve other work on the box.
#
# Environment (defaults in brackets):
#   IGGY_SRC                 the apache/iggy checkout (or the first argument)
#   IGGY_TOOLCHAIN [the toolchain rustup picks in this repository]   RUSTUP_TOOLCHAIN for the Iggy build
#   IGGY_BUILD_JOBS [1]      cargo -j for the Iggy build
#   IGGY_TARGET_DIR [$IGGY_SRC/target]   CARGO_TARGET_DIR for the Iggy build
#   IGGY_PORT [18083]        Iggy's HTTP listener on 127.0.0.1 (sluice: 18081, admin 18091, as in bench.sh)
#   PARTITIONS [64]          partitions of the Iggy topic
#   PARTITIONING [messages_key]   messages_key (per-request key = "u_<user>") or balanced (round robin)
#   TOKENS [64]              Iggy logins (bearer tokens); requests cycle through them (see the note at LOAD)
#   VARIANTS [256]           pre-built requests per kind (single, batch100), each with its own user key
#   USERS [100000]           user ids the keys are drawn from (sluice bench's --users default)
#   BENCH_ARGS ["--connections 64 --duration 10 --warmup 2"]   sluice bench arguments of every load step
#   BATCH_ARGS ["--batch 100 --requests 150000"]   added to BENCH_ARGS for sluice's batch step
#   ROUNDS [2]               alternations of Iggy and sluice
#   IGGY_TEMPLATE_FLAG [--request-templates]   the `sluice bench` option that sends pre-built requests
#   SLUICE_BIN [build this repository]   a sluice binary to use instead of `cargo build --release`
#   SERVER_CPU [0], CLIENT_CPU [1]
#   BENCH_DIR [mktemp under /var/tmp]   data directories, request files and results (removed at
#                            exit unless BENCH_DIR is set)
set -euo pipefail

serve=0 src=${IGGY_SRC:-}
for arg in "$@"; do
  case $arg in
    --serve) serve=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) src=$arg ;;
  esac
done
if [[ -z "$src" || ! -f "$src/core/server/Cargo.toml" ]]; then
  echo "usage: tuning/iggy_bench.sh IGGY_SRC [--serve]  (or IGGY_SRC=... tuning/iggy_bench.sh)" >&2
  echo "IGGY_SRC must be a checkout of the apache/iggy repository (git clone it there first);" >&2
  echo "'${src:-<unset>}' has no core/server/Cargo.toml" >&2
  exit 2
fi
src=$(cd "$src" && pwd)
iggy_port=${IGGY_PORT:-18083}
partitions=${PARTITIONS:-64}
partitioning=${PARTITIONING:-messages_key}
tokens=${TOKENS:-64}
variants=${VARIANTS:-256}
users=${USERS:-100000}
rounds=${ROUNDS:-2}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
root=$(cd "$(dirname "$0")/.." && pwd)
work=${BENCH_DIR:-$(mktemp -d /var/tmp/sluice-iggy-bench.XXXXXX)}
mkdir -p "$work"
iggy_url="http://127.0.0.1:$iggy_port"
iggy_pid='' sluice_pid=''
cleanup() {
  for pid in $iggy_pid $sluice_pid; do
    if kill -TERM "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$work/iggy-data" "$work/sluice-data"
  [[ -z "${BENCH_DIR:-}" ]] && rm -rf "$work"
  return 0
}
trap cleanup EXIT

# --- Debian packages: Iggy's build dependencies (its Dockerfile and CI) and the tools used here.
missing=()
for pkg in build-essential pkg-config libhwloc-dev libudev-dev curl python3 util-linux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- Build Iggy's server (release: lto, codegen-units 1; about 10-60 minutes at -j1) and sluice.
# Iggy's rust-toolchain.toml pins a channel rustup may not have; its rust-version decides
# what builds, so use the toolchain this repository uses unless IGGY_TOOLCHAIN says otherwise.
toolchain=${IGGY_TOOLCHAIN:-$(cd "$root" && rustup show active-toolchain 2>/dev/null | awk '{print $1; exit}')}
features=()
# The embedded web UI needs npm-built assets; the benchmark does not need it.
grep -q '^iggy-web' "$src/core/server/Cargo.toml" && features=(--no-default-features --features mimalloc)
iggy_target=${IGGY_TARGET_DIR:-$src/target}
echo "building iggy-server in $src (toolchain ${toolchain:-default}, -j${IGGY_BUILD_JOBS:-1}, log $work/iggy-build.log)"
if ! (cd "$src" && RUSTUP_TOOLCHAIN=$toolchain CARGO_TARGET_DIR=$iggy_target nice -n 19 \
  cargo build --release --locked -j "${IGGY_BUILD_JOBS:-1}" -p server --bin iggy-server "${features[@]}") \
  >"$work/iggy-build.log" 2>&1; then
  tail -30 "$work/iggy-build.log" >&2
  echo "the Iggy build failed (a checkout newer than the toolchain? check out an older tag)" >&2
  exit 1
fi
iggy_bin=$iggy_target/release/iggy-server
iggy_config=$src/core/server/config.toml
[[ -f "$iggy_config" ]] || { echo "no $iggy_config in this Iggy checkout" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

commit="$(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo unknown)$(cd "$root" && git diff --quiet 2>/dev/null || echo '+dirty')"
iggy_commit="$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown) ($("$iggy_bin" --version 2>/dev/null | head -1))"
echo "sluice $commit; iggy $iggy_commit; $(nproc) cores; kernel $(uname -r); server cpu $server_cpu, client cpu $client_cpu"

# --- Iggy: HTTP only, on loopback, one shard. `cpu_allocation = 1` makes one shard pinned to
# the first CPU the process may use, and taskset gives it only SERVER_CPU, so the shard and
# Iggy's helper threads (logging, ctrl-c) all run there. Durability: Iggy's defaults (the
# 201 comes after the in-memory commit, "Iggy-Durability: replicated-memory"; segments are
# flushed every 1024 messages or 1 MiB, no fsync) - compare with sluice's durability `os`.
start_iggy() {
  rm -rf "$work/iggy-data"
  # cd: Iggy reads a .env from its working directory; $work has none.
  (cd "$work" && exec env IGGY_CONFIG_PATH="$iggy_config" IGGY_SYSTEM_PATH="$work/iggy-data" \
    IGGY_HTTP_ENABLED=true IGGY_HTTP_ADDRESS="127.0.0.1:$iggy_port" \
    IGGY_TCP_ENABLED=false IGGY_QUIC_ENABLED=false IGGY_WEBSOCKET_ENABLED=false \
    IGGY_SYSTEM_SHARDING_CPU_ALLOCATION=1 IGGY_ROOT_USERNAME=iggy IGGY_ROOT_PASSWORD=iggy \
    IGGY_HTTP_JWT_ACCESS_TOKEN_EXPIRY="24 h" \
    taskset -c "$server_cpu" "$iggy_bin" --fresh) >"$work/iggy.log" 2>&1 &
  iggy_pid=$!
  for _ in $(seq 300); do curl -sf "$iggy_url/ping" >/dev/null && break; sleep 0.1; done
  if ! curl -sf "$iggy_url/ping" >/dev/null; then
    echo "Iggy did not start:" >&2; tail -30 "$work/iggy.log" >&2; exit 1
  fi
  (($(sed 's/\x1b\[[0-9;]*m//g' "$work/iggy.log" | grep -c "Using 1 shard(s) with affinity to cores \[$server_cpu\]") > 0)) ||
    echo "warning: Iggy's log does not say 'Using 1 shard(s) with affinity to cores [$server_cpu]'" >&2
}

iggy_call() { # method path [json]: prints the body, fails unless 2xx
  local args=(-sS -f -X "$1" "$iggy_url$2" -H "Authorization: Bearer $admin_token")
  [[ $# -ge 3 ]] && args+=(-H 'Content-Type: application/json' -d "$3")
  curl "${args[@]}"
}

start_iggy
: >"$work/tokens.txt"
for _ in $(seq "$tokens"); do # one login each: Iggy caps awaited writes at 32 per login
  curl -sS -f -X POST "$iggy_url/users/login" -H 'Content-Type: application/json' \
    -d '{"username":"iggy","password":"iggy"}' |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"]["token"])' >>"$work/tokens.txt"
done
admin_token=$(head -1 "$work/tokens.txt")
stream_id=$(iggy_call POST /streams '{"name":"events"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
topic_id=$(iggy_call POST "/streams/$stream_id/topics" \
  "{\"name\":\"bets\",\"partitions_count\":$partitions,\"compression_algorithm\":\"none\",\"message_expiry\":0,\"max_topic_size\":0}" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
echo "Iggy on $iggy_url (pid $iggy_pid): stream $stream_id \"events\", topic $topic_id \"bets\" with $partitions partitions, $tokens tokens"

# --- The request files. Per kind (single, batch100), VARIANTS pre-built requests, each for one
# user key and one of the tokens (variant i: token i mod TOKENS):
#   requests/<kind>.jsonl   one template a line: {"method","path","headers":[[name,value]...],"body",
#                           "events","key","partition"} - body is the exact JSON to send
#   requests/<kind>/NNNN.http   the same request as raw HTTP/1.1 bytes (Content-Length included)
#   requests/shape.txt      the shape in words, with curl commands for the first variant
reqdir=$work/requests
python3 - "$reqdir" "$iggy_port" "$stream_id" "$topic_id" "$work/tokens.txt" "$variants" "$users" \
  "$partitions" "$partitioning" <<'PY'
import base64, json, os, random, struct, sys

out, port, stream, topic, tokens_file, variants, users, partitions, partitioning = sys.argv[1:]
variants, users, partitions = int(variants), int(users), int(partitions)
tokens = [line.strip() for line in open(tokens_file) if line.strip()]
path = f"/streams/{stream}/topics/{topic}/messages"
rng = random.Random(1)

def xxh32(data, seed=0):  # the xxHash32 algorithm (public spec); Iggy: partition = xxh32(key) % count
    p1, p2, p3, p4, p5, m = 2654435761, 2246822519, 3266489917, 668265263, 374761393, 0xFFFFFFFF
    rotl = lambda x, r: ((x << r) | (x >> (32 - r))) & m
    n, i = len(data), 0
    if n >= 16:
        v = [(seed + p1 + p2) & m, (seed + p2) & m, seed & m, (seed - p1) & m]
        while i + 16 <= n:
            for k in range(4):
                v[k] = rotl((v[k] + struct.unpack_from("<I", data, i)[0] * p2) & m, 13) * p1 & m
                i += 4
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & m
    else:
        h = (seed + p5) & m
    h = (h + n) & m
    while i + 4 <= n:
        h = rotl((h + struct.unpack_from("<I", data, i)[0] * p3) & m, 17) * p4 & m
        i += 4
    while i < n:
        h = rotl((h + data[i] * p5) & m, 11) * p1 & m
        i += 1
    h ^= h >> 15; h = h * p2 & m; h ^= h >> 13; h = h * p3 & m; h ^= h >> 16
    return h

def event(event_id, user, kind):  # sluice bench's event shape, 330 bytes
    text = ('{"event_id":"%s","event_type":"%s","schema_version":"1.3.0","occurred_at":"2025-10-24T11:37:21Z",'
            '"key":{"user_id":"u_%d"},"ctx":{"session_id":"s_%d","platform":"ios","geo":"TR"},'
            '"payload":{"game_id":"slot_wolf","bet":0.5,"win":1.25,"currency":"EUR","provider":"GameCo"}'
            % (event_id, kind, user, user))
    pad = 330 - len(text) - len(',"props":{"pad":""}}')
    return text + ',"props":{"pad":"%s"}}' % ("x" * max(pad, 0))

b64 = lambda raw: base64.b64encode(raw).decode()
os.makedirs(out, exist_ok=True)
first = {}
for kind, count in (("single", 1), ("batch100", 100)):
    os.makedirs(f"{out}/{kind}", exist_ok=True)
    with open(f"{out}/{kind}.jsonl", "w") as jsonl:
        for v in range(variants):
            user = rng.randint(1, users)
            key = f"u_{user}"
            if partitioning == "balanced":
                parting, partition = {"kind": "balanced", "value": ""}, None
            else:
                parting, partition = {"kind": "messages_key", "value": b64(key.encode())}, xxh32(key.encode()) % partitions
            # One key per request: Iggy puts the whole batch in one partition, so a batch is
            # one user's 100 events (a producer keyed by user groups its events per key).
            body = json.dumps({"partitioning": parting, "messages": [
                {"payload": b64(event(f"i{kind[0]}-{v}-{j}", user, ("bet", "win", "deposit")[j % 3]).encode())}
                for j in range(count)]}, separators=(",", ":"))
            headers = [["Host", f"127.0.0.1:{port}"], ["Authorization", f"Bearer {tokens[v % len(tokens)]}"],
                       ["Content-Type", "application/json"], ["Content-Length", str(len(body))]]
            jsonl.write(json.dumps({"method": "POST", "path": path, "headers": headers, "body": body,
                                    "events": count, "key": key, "partition": partition}) + "\n")
            raw = f"POST {path} HTTP/1.1\r\n" + "".join(f"{n}: {val}\r\n" for n, val in headers) + "\r\n" + body
            open(f"{out}/{kind}/{v:04d}.http", "w").write(raw)
            if v == 0:
                open(f"{out}/{kind}-0000.body.json", "w").write(body)
                first[kind] = (key, partition, len(body))
with open(f"{out}/expected.txt", "w") as f:  # for the curl check: kind key partition
    for kind, (key, partition, _) in first.items():
        f.write(f"{kind} {key} {'' if partition is None else partition}\n")
ex_payload = b64(event("e_1", 1, "bet").encode())
with open(f"{out}/shape.txt", "w") as f:
    f.write(f"""Iggy HTTP produce request (server on 127.0.0.1:{port}, stream {stream} "events", topic {topic} "bets", {partitions} partitions)

Login (once per token; a token is a JWT, 24 h here; Iggy allows 32 awaited writes per login, 128 per server):
  POST /users/login
  Content-Type: application/json
  {{"username":"iggy","password":"iggy"}}
  -> 200 {{"user_id":0,"access_token":{{"token":"<JWT>","expiry":<unix s>}}}}

Send (single event and batch of 100 alike; stream and topic may be ids or names):
  POST {path}
  Host: 127.0.0.1:{port}
  Authorization: Bearer <JWT>
  Content-Type: application/json
  Content-Length: <n>

  {{"partitioning":{{"kind":"messages_key","value":"<base64 of the key bytes, 1..255 bytes>"}},
   "messages":[{{"payload":"<base64 of the event>"}}, ... one object per event ...]}}

  - partitioning.kind: "messages_key" (partition = partitions[xxHash32(key bytes, seed 0) % partitions_count]),
    "partition_id" (value = base64 of the partition id as 4 little-endian bytes, e.g. "BQAAAA==" = 5),
    or "balanced" (value "", round robin). One partitioning per request: a batch lands in one partition.
  - messages[].id: optional; 0 or absent and the server mints a random u128 id (a number or a
    UUID string is accepted); messages[].user_headers: optional.
  - Answer: 201 Created, "Iggy-Durability: replicated-memory",
    {{"confirmations":[{{"stream_id":{stream},"topic_id":{topic},"partition_id":<p>,"base_offset":<offset>}}]}}
    after the commit (in memory; not fsynced). With ?ack=none: 202, empty body, before the commit
    (and an ERROR log line per request in 0.9.0-edge.5). Errors: 400 (e.g. empty key, empty messages),
    401 (missing/invalid token), 413 (body over 2 MB), 422 (malformed JSON), 429 (more than 32
    awaited writes on one login), 503 (more than 128 on the server), 504 (no commit within 10 s).

Example single event (key u_1 -> partition {xxh32(b"u_1") % partitions}), payload = base64 of
  {event("e_1", 1, "bet")}
  {{"partitioning":{{"kind":"messages_key","value":"{b64(b"u_1")}"}},"messages":[{{"payload":"{ex_payload}"}}]}}

Files: single.jsonl / batch100.jsonl (one template a line: method, path, headers, body, events, key,
partition), single/NNNN.http and batch100/NNNN.http (raw HTTP/1.1 requests), *-0000.body.json (bodies
of the first variant). The first single variant is {first['single'][2]} bytes of body, a batch of 100
is {first['batch100'][2]} bytes.

curl, first variant:
  curl -i -X POST http://127.0.0.1:{port}{path} -H "Authorization: Bearer $(head -1 tokens.txt)" \\
       -H 'Content-Type: application/json' --data-binary @requests/single-0000.body.json
  curl -i -X POST http://127.0.0.1:{port}{path} -H "Authorization: Bearer $(head -1 tokens.txt)" \\
       -H 'Content-Type: application/json' --data-binary @requests/batch100-0000.body.json
Poll back: GET /streams/{stream}/topics/{topic}/messages?consumer_id=1&partition_id=<p>&kind=offset&value=0&count=100
""")
PY
echo "request files: $reqdir (shape: $reqdir/shape.txt)"

# --- Check the request shape with curl: each kind's first variant is answered 201 in the
# partition its key hashes to, and the events poll back; then purge the topic.
while read -r kind key partition; do
  answer=$(curl -sS -w '\n%{http_code}' -X POST "$iggy_url/streams/$stream_id/topics/$topic_id/messages" \
    -H "Authorization: Bearer $admin_token" -H 'Content-Type: application/json' --data-binary "@$reqdir/$kind-0000.body.json")
  status=${answer##*$'\n'}
  got=$(echo "${answer%$'\n'*}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["confirmations"][0]["partition_id"])' 2>/dev/null || true)
  [[ "$status" == 201 ]] || { echo "curl check: $kind answered $status: ${answer%$'\n'*}" >&2; exit 1; }
  [[ -z "$partition" || "$got" == "$partition" ]] || { echo "curl check: $kind key $key went to partition $got, expected $partition" >&2; exit 1; }
  polled=$(iggy_call GET "/streams/$stream_id/topics/$topic_id/messages?consumer_id=1&partition_id=$got&kind=offset&value=0&count=1000" |
    python3 -c 'import json, sys; print(len(json.load(sys.stdin)["messages"]))')
  echo "curl check: $kind (key $key) -> 201, partition $got, $polled message(s) polled back"
done <"$reqdir/expected.txt"
iggy_call DELETE "/streams/$stream_id/topics/$topic_id/purge" >/dev/null

if ((serve)); then
  echo "Iggy keeps running (pid $iggy_pid) on $iggy_url; tokens in $work/tokens.txt (valid while this Iggy runs: its JWT secret is new at every start). Ctrl-C stops it."
  wait "$iggy_pid"
  exit 0
fi

# ===========================================================================================
# LOAD: `sluice bench` against Iggy and against sluice, alternately (issue 16).
#
# The Iggy side needs `sluice bench` to send pre-built requests (IGGY_TEMPLATE_FLAG, being
# added); until it has that option this section says so and stops after the curl check.
#
# Iggy request shape (checked against server 0.9.0-edge.5's HTTP handler and with curl):
#   POST /streams/<stream id or name>/topics/<topic id or name>/messages   (here /streams/0/topics/0/messages)
#   Authorization: Bearer <JWT from POST /users/login {"username":"iggy","password":"iggy"}>
#   Content-Type: application/json
#   {"partitioning":{"kind":"messages_key","value":"<base64(key bytes), e.g. dV8x = u_1>"},
#    "messages":[{"payload":"<base64(event JSON)>"}, ...]}         1 message, or 100 for a batch
#   -> 201 Created, Iggy-Durability: replicated-memory,
#      {"confirmations":[{"stream_id":0,"topic_id":0,"partition_id":<p>,"base_offset":<o>}]}
#   partition = xxHash32(key bytes, seed 0) % partitions_count; a batch goes to ONE partition
#   (one key per request), so a batch here is one user's 100 events, where sluice partitions
#   each event of a batch by its own key.user_id. "id" per message is optional (server mints).
#   Iggy caps awaited writes at 32 per login (429 past it) and 128 per server (503): more than
#   32 connections need more than one token (TOKENS, cycled over the variants), and more
#   than 128 connections cannot all have a request waiting.
#   The templates are requests/single.jsonl and requests/batch100.jsonl (each line: method,
#   path, headers incl. Authorization, body, events per request); raw HTTP/1.1 copies in
#   requests/single/ and requests/batch100/. The bench must count 201 as success, and a
#   batch100 request as 100 events.
# ===========================================================================================
bench_args=${BENCH_ARGS:---connections 64 --duration 10 --warmup 2}
batch_args=${BATCH_ARGS:---batch 100 --requests 150000}
template_flag=${IGGY_TEMPLATE_FLAG:---request-templates}
if [[ -n "${SLUICE_BIN:-}" ]]; then
  sluice=$SLUICE_BIN
else
  (cd "$root" && cargo build --release --locked --quiet)
  sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
fi
bench_help=$("$sluice" bench --help 2>&1 || true)
if [[ "$bench_help" != *"$template_flag"* ]]; then
  echo
  echo "LOAD skipped: 'sluice bench' has no $template_flag option yet (issue 16). The Iggy request shape is in"
  echo "$reqdir/shape.txt; run with --serve and BENCH_DIR set to keep Iggy and the request files for a manual run."
  exit 0
fi

"$sluice" keys gen --keys-file "$work/keys.toml" --partner bench >/dev/null
cat >"$work/sluice.toml" <<TOML
[ingest]
listen = "127.0.0.1:18081"
shards = 1
connections_per_ip_max = 0
[storage]
data_dir = "$work/sluice-data"
durability = "os"
segment_bytes = 67108864
[auth]
keys_file = "$work/keys.toml"
[admin]
listen = "127.0.0.1:18091"
TOML
# Both servers stay up on SERVER_CPU, the idle one costs next to nothing (Iggy idle: about
# 0.6% of a core), so the client can alternate between them without restarts.
taskset -c "$server_cpu" "$sluice" serve --config "$work/sluice.toml" 2>"$work/sluice.err" &
sluice_pid=$!
for _ in $(seq 300); do grep -q listening "$work/sluice.err" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$work/sluice.err" || { echo "sluice did not start:" >&2; cat "$work/sluice.err" >&2; exit 1; }

run_iggy() { # kind round
  # shellcheck disable=SC2086 # bench_args is a list of words
  taskset -c "$client_cpu" "$sluice" bench --url "$iggy_url" $bench_args \
    "$template_flag" "$reqdir/$1.jsonl" --json >"$work/iggy-$1-r$2.json"
  python3 "$root/tuning/bench_report.py" row "$work/iggy-$1-r$2.json" "iggy-$1-r$2"
}
run_sluice() { # kind round
  local extra=
  [[ $1 == batch100 ]] && extra=$batch_args
  # shellcheck disable=SC2086
  taskset -c "$client_cpu" "$sluice" bench --url http://127.0.0.1:18081 --keys-file "$work/keys.toml" \
    $bench_args $extra --json >"$work/sluice-$1-r$2.json"
  python3 "$root/tuning/bench_report.py" row "$work/sluice-$1-r$2.json" "sluice-$1-r$2"
}
for round in $(seq "$rounds"); do
  for kind in single batch100; do
    if ((round % 2)); then run_iggy "$kind" "$round"; run_sluice "$kind" "$round"
    else run_sluice "$kind" "$round"; run_iggy "$kind" "$round"; fi
  done
done
# --- end of LOAD

stored=$(iggy_call GET "/streams/$stream_id/topics/$topic_id" | python3 -c 'import json, sys; print(json.load(sys.stdin)["messages_count"])')
echo "Iggy stored $stored messages in topic $topic_id"
