#!/usr/bin/env bash
# Builds every fuzz target, then runs each in turn for SECONDS (default 60), keeping
# the corpus in fuzz/corpus/<target>, crash inputs in fuzz/artifacts/<target>/ and the
# run's output in fuzz/logs/<target>.log. Exit status 1 if any target crashed, 2 if the
# build failed. Usage: fuzz/run.sh [SECONDS [TARGET...]]   (docs/FUZZING.md)
set -uo pipefail

seconds="${1:-60}"
shift $(($# > 0 ? 1 : 0))
cd "$(dirname "$0")"
# cargo fuzz passes nightly-only flags (-Zsanitizer=address and friends);
# RUSTC_BOOTSTRAP=1 lets the stable toolchain accept them.
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# Optimised, but with debug assertions and overflow checks: an overflow is a finding.
flags=(-O -a --target-dir "${FUZZ_TARGET_DIR:-target}")

cargo fuzz build "${flags[@]}" || exit 2
mkdir -p logs
crashed=()
targets=("$@")
((${#targets[@]})) || mapfile -t targets < <(cargo fuzz list)
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target" "artifacts/$target"
    extra=(-max_total_time="$seconds" -max_len=16384 -print_final_stats=1)
    [[ -f "$target.dict" ]] && extra+=(-dict="$target.dict")
    log="logs/$target.log"
    echo "== $target: ${seconds} s"
    if ! cargo fuzz run "${flags[@]}" "$target" "corpus/$target" "seeds/$target" -- "${extra[@]}" >"$log" 2>&1; then
        crashed+=("$target")
        tail -n 30 "$log"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    corpus=$(find "corpus/$target" -type f | wc -l)
    found=$(find "artifacts/$target" -type f | wc -l)
    echo "   runs: ${runs:-?}  exec/s: ${rate:-?}  corpus: ${corpus} inputs  crash artefacts: ${found}"
done

if ((${#crashed[@]})); then
    echo "crashed: ${crashed[*]} (inputs in fuzz/artifacts/, reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a TARGET FILE)" >&2
    exit 1
fi
