#!/usr/bin/env bash
# Regenerate the seed corpus of fuzz_model_load (tests/fuzz/corpus/model_load/) from
# make_corpus.c: small real models saved by the current library.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_fuzz_compiler

mkdir -p "$build_dir" "$fuzz_dir/corpus/model_load"
build_fuzz_programs make_corpus
"$cmake_dir/tests/fuzz/make_corpus" "$fuzz_dir/corpus/model_load"
