# Sourced by run.sh and make_corpus.sh: where things are, and the CMake build of the fuzz targets
# (EMBETTER_BUILD_FUZZERS: the library as CMake builds it, instrumented, plus tests/fuzz/CMakeLists.txt).

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$fuzz_dir/../.." && pwd)
build_dir=${EB_FUZZ_BUILD_DIR:-$repo_root/build-fuzz}
fuzz_cc=${EB_FUZZ_CC:-clang-14}
cmake_dir=$build_dir/cmake

# build_fuzz_programs TARGET...: configure (once) and build the named programs; they land in $cmake_dir/tests/fuzz.
build_fuzz_programs() {
    cmake -S "$repo_root" -B "$cmake_dir" -DCMAKE_C_COMPILER="$fuzz_cc" -DCMAKE_BUILD_TYPE=Debug \
        -DCMAKE_C_FLAGS_DEBUG="-O1" -DEMBETTER_BUILD_FUZZERS=ON -DEMBETTER_BUILD_TESTS=OFF \
        -DEMBETTER_BUILD_EXAMPLES=OFF >/dev/null &&
        cmake --build "$cmake_dir" -j"$(nproc 2>/dev/null || echo 2)" --target "$@"
}

# A clear message instead of a compiler error when the fuzzing toolchain is missing.
require_fuzz_compiler() {
    if ! command -v "$fuzz_cc" >/dev/null; then
        echo "$(basename "$0"): $fuzz_cc not found; install the Debian packages clang-14 and libclang-rt-14-dev" >&2
        echo "$(basename "$0"): (or set EB_FUZZ_CC to another clang with libFuzzer)" >&2
        exit 2
    fi
}
