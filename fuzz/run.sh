#!/usr/bin/env bash
# Builds the libFuzzer targets and runs each one, from seed corpora drawn from the tree.
#
#   bash fuzz/run.sh                      # every target for 20 s (what .ci/run does)
#   SECONDS_EACH=600 bash fuzz/run.sh request_head
#   RUNS=10000000 bash fuzz/run.sh        # a fixed number of executions per target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`); the stable toolchain is enough:
# RUSTC_BOOTSTRAP=1 lets it pass libFuzzer's nightly flags. Sanitizers are off (`-s none`):
# the code under test has no `unsafe`; debug assertions and overflow checks are on.
#
# Before fuzzing, every input under fuzz/regressions/<target>/ (crashes found earlier) is run
# once: a regression fails the script. A crash writes its input to fuzz/artifacts/<target>/
# and the script exits 1 after the remaining targets ran. Per target it prints one line:
# executions, executions per second, coverage and corpus size.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
all=(request_head response_head usage_batch entities_import config_toml jwt)
targets=("${@:-${all[@]}}")
seconds=${SECONDS_EACH:-20}
runs=${RUNS:-}

cd "$here"
export RUSTC_BOOTSTRAP=1
if ! build=$(cargo fuzz build -s none -O 2>&1); then echo "$build" >&2; echo "fuzz: build failed" >&2; exit 2; fi
# cargo-fuzz builds into $CARGO_TARGET_DIR when it is set, else into fuzz/target.
bin_dir="${CARGO_TARGET_DIR:-$here/target}/x86_64-unknown-linux-gnu/release"

seed() { # target -> corpus directory filled with the seeds the tree has for it
    local t=$1 dir="$here/corpus/$1"
    mkdir -p "$dir"
    [ -d "$here/seeds/$t" ] && cp -n "$here/seeds/$t"/* "$dir"/ 2>/dev/null || true
    case $t in
        config_toml) cp -n "$root"/examples/*.toml "$dir"/ 2>/dev/null || true ;;
        entities_import)
            cp -n "$root"/examples/entities.json "$dir"/ 2>/dev/null || true
            cp -n "$root"/fixtures/otoroshi/*.json "$dir"/ 2>/dev/null || true ;;
    esac
    echo "$dir"
}

failed=0
for t in "${targets[@]}"; do
    bin="$bin_dir/$t"
    [ -x "$bin" ] || { echo "fuzz: no target $t" >&2; exit 2; }
    if [ -d "$here/regressions/$t" ] && ls "$here/regressions/$t"/* >/dev/null 2>&1; then
        if ! "$bin" "$here/regressions/$t"/* >"/tmp/fuzz-$t-regressions.log" 2>&1; then
            echo "fuzz: $t: a regression input fails again (see /tmp/fuzz-$t-regressions.log)" >&2
            failed=1
            continue
        fi
    fi
    corpus=$(seed "$t")
    mkdir -p "$here/artifacts/$t"
    limit=(-max_total_time="$seconds")
    [ -n "$runs" ] && limit=(-runs="$runs")
    log="/tmp/fuzz-$t.log"
    if "$bin" "$corpus" "${limit[@]}" -print_final_stats=1 -max_len=4096 \
        -artifact_prefix="$here/artifacts/$t/" >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed=1
    fi
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+' "$log" | tail -1 | grep -o 'cov: [0-9]* ft: [0-9]* corp: [0-9]*/[0-9A-Za-z]*' || true)
    printf 'fuzz %-16s %-5s %12s execs %9s/s  %s\n' "$t" "$status" "${execs:-?}" "${rate:-?}" "$cov"
    [ $status = ok ] || grep -E 'panicked|ERROR|Test unit written' "$log" | head -5 >&2
done
exit $failed
