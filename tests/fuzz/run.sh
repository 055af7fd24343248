#!/usr/bin/env bash
# Build every tests/fuzz/fuzz_*.c as a libFuzzer binary (ASan + UBSan), linked to the library as
# CMake builds it (EMBETTER_BUILD_FUZZERS), and run each for a bounded time from its seed corpus.
#
# usage: tests/fuzz/run.sh [seconds per target (default 60)] [target ...]
#   targets are names like fuzz_model_load; by default every tests/fuzz/fuzz_*.c runs.
#
# A target names its seed corpus with a line "fuzz-corpus: <dir>" in its source, a
# directory under tests/fuzz/corpus/; without one it is the target's name minus "fuzz_".
# New inputs found go to $EB_FUZZ_BUILD_DIR/corpus-<target>/ (default build-fuzz/, ignored
# by git), crashes to $EB_FUZZ_BUILD_DIR/artifacts/. The script fails when any target
# crashes, leaks, trips a sanitizer or times out: libFuzzer then exits non-zero. Targets run one
# per CPU at a time (EB_FUZZ_JOBS sets how many), each for its full time.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_fuzz_compiler

seconds=${1:-60}
shift || true
if ! [[ $seconds =~ ^[0-9]+$ ]] || [ "$seconds" -eq 0 ]; then
    echo "run.sh: the time per target must be a positive number of seconds, not '$seconds'" >&2
    exit 2
fi

targets=()
if [ $# -gt 0 ]; then
    for name in "$@"; do targets+=("$fuzz_dir/${name%.c}.c"); done
else
    for source in "$fuzz_dir"/fuzz_*.c; do [ -e "$source" ] && targets+=("$source"); done
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "run.sh: no fuzz targets found in $fuzz_dir" >&2
    exit 2
fi

mkdir -p "$build_dir/artifacts"
names=()
for source in "${targets[@]}"; do
    [ -f "$source" ] || { echo "run.sh: no such target $source" >&2; exit 2; }
    names+=("$(basename "$source" .c)")
done
echo "== building ${names[*]}"
build_fuzz_programs "${names[@]}"
# run_target SOURCE: one target for $seconds from its corpora; its summary line goes to $build_dir/NAME.summary.
run_target() {
    local source=$1 name corpus_name seed_corpus work_corpus log status execs coverage
    name=$(basename "$source" .c)
    corpus_name=$(sed -n 's/.*fuzz-corpus: *\([A-Za-z0-9_./-]*\).*/\1/p' "$source" | head -n 1)
    seed_corpus="$fuzz_dir/corpus/${corpus_name:-${name#fuzz_}}"
    work_corpus="$build_dir/corpus-$name"
    mkdir -p "$work_corpus"

    local corpora=("$work_corpus")
    if [ -d "$seed_corpus" ]; then
        corpora+=("$seed_corpus")
    else
        echo "run.sh: warning: $name has no seed corpus at $seed_corpus" >&2
    fi
    echo "== running $name for ${seconds}s (seeds: ${seed_corpus#$repo_root/})"
    log="$build_dir/$name.log"
    status=0
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
        "$cmake_dir/tests/fuzz/$name" -max_total_time="$seconds" -timeout=30 -print_final_stats=1 \
        -artifact_prefix="$build_dir/artifacts/$name-" "${corpora[@]}" >"$log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)
    if [ "$status" -ne 0 ]; then
        echo "!! $name failed (exit $status); last lines of $log:" >&2
        tail -n 40 "$log" >&2
        echo "$name: FAILED (exit $status) after ${execs:-?} executions" >"$build_dir/$name.summary"
        return 1
    fi
    echo "$name: ok, ${execs:-?} executions in ${seconds}s, ${coverage:-cov: ?}" >"$build_dir/$name.summary"
}

# One target per CPU at a time: each fuzzer is one process on one core, so every target still gets its time.
parallel=${EB_FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}
failed=0
running=0
for source in "${targets[@]}"; do
    if [ "$running" -ge "$parallel" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
    rm -f "$build_dir/$(basename "$source" .c).summary"
    run_target "$source" &
    running=$((running + 1))
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done
summary=()
for name in "${names[@]}"; do
    summary+=("$(cat "$build_dir/$name.summary" 2>/dev/null || echo "$name: FAILED (no summary)")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
exit $failed
