#!/usr/bin/env bash
# Runs a real `sluice serve` through the life a systemd unit gives it, and either records
# every system call (strace) or enforces the unit's seccomp filter on it (--seccomp).
#
#   systemd/trace-syscalls.sh [--seccomp] [--unit FILE] [BINARY] [OUT]
#     BINARY     the sluice binary (default: $CARGO_TARGET_DIR/release/sluice, else
#                target/release/sluice)
#     OUT        strace mode: where the raw `strace -f` output of all runs goes
#                (default ./sluice.strace); check it with systemd/check-syscalls.sh OUT
#     --seccomp  no strace: every sluice process (serve, and the unit's ExecReload=
#                commands) runs under the filter the unit describes, built by
#                seccomp-exec.py from `check-syscalls.sh --print-allowed`, with SIGSYS for
#                anything outside it. Any denied call kills the server: the run fails.
#     --unit     the unit whose filter --seccomp enforces (default: systemd/sluice.service)
#
# The scenario, run twice over one temporary data dir: a fresh start with durability
# "os"; then a torn tail and a zeroed segment header are planted, and a restart with
# durability "fsync" recovers them and replays the request-id journal. Each run:
#   start with ingest (plaintext and TLS) and admin on 127.0.0.1:0, NOTIFY_SOCKET and
#   WATCHDOG_USEC/WATCHDOG_PID as systemd sets them (the datagrams received are printed);
#   GET /healthz /readyz /metrics and POST /admin/reload on the admin listener;
#   `sluice bench` closed loop: single events with duplicates and bad signatures, NDJSON
#   batches with X-Request-Id, TLS;
#   the unit's ExecReload=: `sluice check-config`, then `/bin/kill -HUP` (both traced or
#   filtered too); SIGTERM, and the exit status must be 0.
# Needs strace (not with --seccomp), curl, python3, openssl (TLS is skipped without it).
# About 20 s. BENCH_SECS sets each bench run's length (default 2).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
mode=strace
unit=$here/sluice.service
positional=()
while (($#)); do
    case $1 in
        --seccomp) mode=seccomp; shift ;;
        --unit) unit=${2:?--unit needs a file}; shift 2 ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) positional+=("$1"); shift ;;
    esac
done
bin=${positional[0]:-${CARGO_TARGET_DIR:-$repo/target}/release/sluice}
out=$(realpath -m "${positional[1]:-sluice.strace}")
bench_secs=${BENCH_SECS:-2}

needed=(curl python3)
[[ $mode == strace ]] && needed+=(strace)
for tool in "${needed[@]}"; do
    command -v "$tool" >/dev/null || { echo "trace-syscalls: $tool is needed (apt-get install $tool)" >&2; exit 2; }
done
[[ -x $bin ]] || { echo "trace-syscalls: no binary at $bin (cargo build --release first)" >&2; exit 2; }
bin=$(realpath "$bin")
kill_bin=/bin/kill # what the unit's ExecReload= runs
[[ -x $kill_bin ]] || { echo "trace-syscalls: no $kill_bin" >&2; exit 2; }

work=$(mktemp -d)
notify_pid=""
server_pid=""
cleanup() {
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        sleep 1
        kill -KILL "$server_pid" 2>/dev/null
    fi
    [[ -n $notify_pid ]] && kill "$notify_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# --- how each sluice process is started ----------------------------------------------
filter=()
if [[ $mode == seccomp ]]; then
    "$here/check-syscalls.sh" --unit "$unit" --print-allowed >"$work/allowed"
    [[ -s $work/allowed ]] || { echo "trace-syscalls: no allowed set from $unit" >&2; exit 2; }
    setting() { sed -n "s/^[[:space:]]*$1=\(.*\)$/\1/p" "$unit" | tail -1; }
    filter=(python3 "$here/seccomp-exec.py" --allow "$work/allowed" --default kill)
    families=$(setting RestrictAddressFamilies)
    [[ -n $families ]] && filter+=(--families "$(tr -s ' ' ',' <<<"$families")")
    [[ $(setting MemoryDenyWriteExecute) =~ ^(yes|true|on|1)$ ]] && filter+=(--mdwe)
    [[ $(setting RestrictNamespaces) =~ ^(yes|true|on|1)$ ]] && filter+=(--clone3-enosys)
    filter+=(--)
else
    mkdir -p "$(dirname "$out")"
    : >"$out"
fi
n_traced=0
# One short-lived command (check-config, kill): traced or filtered like the server.
aside() {
    if [[ $mode == seccomp ]]; then
        "${filter[@]}" "$@"
    else
        n_traced=$((n_traced + 1))
        strace -f -qq -o "$work/aside.$n_traced" "$@"
        cat "$work/aside.$n_traced" >>"$out"
    fi
}

# --- the sd_notify listener: what systemd would receive on $NOTIFY_SOCKET ---------------
python3 - "$work/notify.sock" >"$work/notify.log" <<'EOF' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
t0 = time.monotonic()
while True:
    data = s.recv(4096)
    for line in data.decode(errors="replace").splitlines():
        print(f"{time.monotonic() - t0:8.3f} {line}", flush=True)
EOF
notify_pid=$!

tls_section=""
if command -v openssl >/dev/null; then
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$work/server.key" -out "$work/server.pem" 2>/dev/null
    tls_section=$(printf '[ingest.tls]\nlisten = "127.0.0.1:0"\ncert_file = "%s"\nkey_file = "%s"\n' \
        "$work/server.pem" "$work/server.key")
else
    echo "trace-syscalls: no openssl, the TLS listener is not exercised" >&2
fi

# Plants damage for the second start's recovery: a torn tail (non-zero bytes past the
# last record) in partition 0000 and a zeroed header in partition 0001.
damage() {
    local seg
    seg=$(find "$work/data/partitions/0000" -name '*.seg' | sort | tail -1)
    [[ -n $seg ]] && head -c 64 /dev/urandom | dd of="$seg" bs=64 seek=$((8 << 20 >> 6)) conv=notrunc status=none
    seg=$(find "$work/data/partitions/0001" -name '*.seg' | sort | tail -1)
    [[ -n $seg ]] && dd if=/dev/zero of="$seg" bs=64 count=1 conv=notrunc status=none
    return 0
}

run() { # $1 = durability, $2 = run number
    local durability=$1 n=$2 pid line ingest tls admin status
    cat >"$work/sluice.toml" <<EOF
[ingest]
listen = "127.0.0.1:0"
shards = 2
drain_timeout_ms = 3000
$tls_section
[storage]
data_dir = "$work/data"
durability = "$durability"
[admin]
listen = "127.0.0.1:0"
EOF
    local launch=()
    if [[ $mode == seccomp ]]; then
        launch=("${filter[@]}")
    else
        # strace -D: the tracer is a detached grandchild, so the traced server keeps this
        # shell's pid, which is what WATCHDOG_PID must name (systemd sets it to MAINPID).
        launch=(strace -D -f -qq -o "$work/trace.$n")
    fi
    bash -c 'export WATCHDOG_PID=$$; exec "$@"' sluice \
        env NOTIFY_SOCKET="$work/notify.sock" WATCHDOG_USEC=10000000 \
        "${launch[@]}" "$bin" serve --config "$work/sluice.toml" --log-format text \
        >"$work/stdout.$n" 2>"$work/stderr.$n" &
    pid=$!
    server_pid=$pid
    line=""
    for _ in $(seq 300); do
        line=$(grep -m1 'listening ingest=' "$work/stderr.$n" || true)
        [[ -n $line ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ -z $line ]]; then
        cat "$work/stderr.$n" >&2
        status=0
        kill -0 "$pid" 2>/dev/null || wait "$pid" || status=$?
        [[ $status -eq 159 ]] && echo "trace-syscalls: SIGSYS: the seccomp filter killed the server" >&2
        echo "trace-syscalls: the server did not report its addresses (exit status $status)" >&2
        exit 1
    fi
    ingest=$(sed -n 's/.*ingest=\([^ ]*\).*/\1/p' <<<"$line")
    tls=$(sed -n 's/.*ingest_tls=\([^ ]*\).*/\1/p' <<<"$line")
    admin=$(sed -n 's/.*admin=\([^ ]*\).*/\1/p' <<<"$line")
    echo "run $n ($mode, durability $durability): ingest=$ingest tls=${tls:-none} admin=$admin pid=$pid" >&2

    for path in healthz readyz metrics; do curl -fsS -o /dev/null "http://$admin/$path"; done
    curl -fsS -o /dev/null -X POST "http://$admin/admin/reload"
    local keys=$work/data/dev-keys.toml
    [[ -f $keys ]] || { echo "trace-syscalls: no development key ring at $keys" >&2; exit 1; }
    local common=(--keys-file "$keys" --duration "$bench_secs" --json)
    "$bin" bench --url "http://$ingest" "${common[@]}" --connections 8 --requests 100000 --seed "$n" \
        --duplicate-ratio 0.05 --bad-signature-ratio 0.01 >"$work/bench.$n.single.json" 2>/dev/null
    "$bin" bench --url "http://$ingest" "${common[@]}" --connections 8 --requests 5000 --seed "1$n" \
        --batch 20 --request-ids >"$work/bench.$n.batch.json" 2>/dev/null
    if [[ -n $tls ]]; then
        "$bin" bench --url "https://$tls" --insecure "${common[@]}" --connections 4 --requests 50000 --seed "2$n" \
            >"$work/bench.$n.tls.json" 2>/dev/null
    fi
    # The unit's ExecReload=, as the unit runs it.
    aside "$bin" check-config --config "$work/sluice.toml" >/dev/null
    aside "$kill_bin" -HUP "$pid"
    sleep 0.5
    kill -TERM "$pid"
    status=0
    wait "$pid" || status=$?
    server_pid=""
    sed "s/^/[run $n] /" "$work/stderr.$n" >&2
    python3 -c 'import json, sys
for f in sys.argv[1:]:
    r = json.load(open(f))
    print("[run %s] bench %-6s sent %6d answered %6d status %s" % (f.split(".")[-3], f.split(".")[-2],
          r["requests"]["sent"], r["requests"]["completed"], r["status"]), file=sys.stderr)' "$work"/bench."$n".*.json
    if [[ $status -ne 0 ]]; then
        [[ $status -eq 159 ]] && echo "trace-syscalls: SIGSYS: the seccomp filter killed the server" >&2
        echo "trace-syscalls: sluice serve exited $status after SIGTERM (want 0)" >&2
        exit 1
    fi
    if [[ $mode == strace ]]; then
        sleep 0.2 # the detached tracer writes its last lines
        cat "$work/trace.$n" >>"$out"
    fi
}

run os 1
damage
run fsync 2

echo "--- datagrams on NOTIFY_SOCKET (seconds since the listener started)" >&2
if [[ -s $work/notify.log ]]; then cat "$work/notify.log" >&2; else echo "(none: this build does not speak sd_notify)" >&2; fi
if [[ $mode == strace ]]; then
    echo "trace-syscalls: $(wc -l <"$out") lines of strace -f output in $out; next: systemd/check-syscalls.sh $out" >&2
else
    echo "trace-syscalls: both runs passed under the unit's seccomp filter (denied call = SIGSYS)" >&2
fi
