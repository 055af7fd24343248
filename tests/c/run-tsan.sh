#!/bin/sh
# Build the C library and its threaded tests with ThreadSanitizer and run them.
#
#   tests/c/run-tsan.sh [build-dir]      (default: build-tsan, relative to the repository root)
#
# Runs test_concurrency (the threading contract of include/embetter/finetune.h, "Threads"),
# test_threads (transform from eight threads), test_team (the training team of src/workers.c),
# test_training_threads (contrastive fits on 1 to 8 threads), test_encoders and test_static_encoder (the
# encoders' own worker threads, and callers sharing one encoder). Any data race, lock-order inversion or thread leak fails the run (halt_on_error).
#
# OpenBLAS is not built with ThreadSanitizer: TSan cannot see the synchronisation inside
# its own thread pool, and it would report the pool's hand-offs as races in our code that
# reads the products. OPENBLAS_NUM_THREADS=1 keeps every matrix product on the calling
# thread, which TSan does see, so no suppression is needed; the threads under test are
# the library's callers' and its encoders' own.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-"$root/build-tsan"}
jobs=${EMBETTER_JOBS:-2}

cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEMBETTER_SANITIZE_THREAD=ON \
  -DEMBETTER_WERROR=ON -DEMBETTER_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j "$jobs" --target test_concurrency test_threads test_team test_training_threads test_encoders test_static_encoder

OPENBLAS_NUM_THREADS=1 \
TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 report_thread_leaks=1 ${TSAN_OPTIONS:-}" \
  ctest --test-dir "$build" -R '^(test_concurrency|test_threads|test_team|test_training_threads|test_encoders|test_static_encoder)$' --output-on-failure
