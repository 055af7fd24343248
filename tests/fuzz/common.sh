# Sourced by run.sh and make_corpus.sh: where things are, and how the library is compiled
# without CMake (the source list and pkg-config modules are read from the CMake files, so
# sources added there are picked up here too).

fuzz_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$fuzz_dir/../.." && pwd)
build_dir=${EB_FUZZ_BUILD_DIR:-$repo_root/build-fuzz}
fuzz_cc=${EB_FUZZ_CC:-clang-14}

# The library's .c files, from set(EMBETTER_SOURCES ...) in src/CMakeLists.txt.
library_sources() {
    sed -n '/set(EMBETTER_SOURCES/,/)/p' "$repo_root/src/CMakeLists.txt" |
        sed -e 's/set(EMBETTER_SOURCES//' -e 's/)//' | tr -s ' \t' '\n' | grep '\.c$' |
        sed "s|^|$repo_root/src/|"
}

# Compiler and linker flags of every pkg-config module the CMake build asks for, plus zlib.
library_flags() {
    local modules
    modules=$(grep -ho 'pkg_check_modules([A-Za-z0-9_]* *REQUIRED *IMPORTED_TARGET *[^ )]*' \
        "$repo_root/CMakeLists.txt" "$repo_root/src/CMakeLists.txt" | awk '{print $NF}' | sort -u)
    # shellcheck disable=SC2086
    echo "-std=c11 -I$repo_root/include -I$repo_root/src -fno-math-errno $(pkg-config --cflags --libs $modules zlib) -lm -pthread"
}

# A clear message instead of a compiler error when the fuzzing toolchain is missing.
require_fuzz_compiler() {
    if ! command -v "$fuzz_cc" >/dev/null; then
        echo "$(basename "$0"): $fuzz_cc not found; install the Debian packages clang-14 and libclang-rt-14-dev" >&2
        echo "$(basename "$0"): (or set EB_FUZZ_CC to another clang with libFuzzer)" >&2
        exit 2
    fi
}
