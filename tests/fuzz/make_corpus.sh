#!/usr/bin/env bash
# Regenerate the seed corpus of fuzz_model_load (tests/fuzz/corpus/model_load/) from
# make_corpus.c: small real models saved by the current library.
set -euo pipefail
source "$(dirname "$0")/common.sh"
require_fuzz_compiler

mkdir -p "$build_dir" "$fuzz_dir/corpus/model_load"
# shellcheck disable=SC2046
"$fuzz_cc" -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all \
    "$fuzz_dir/make_corpus.c" $(library_sources) $(library_flags) -o "$build_dir/make_corpus"
"$build_dir/make_corpus" "$fuzz_dir/corpus/model_load"
