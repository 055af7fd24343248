#!/usr/bin/env bash
# Install a built libembetter into a temporary prefix and build programs against that prefix the two ways a
# user would: CMake's find_package(embetter) and pkg-config. Each program is run, and must pass.
#   usage: tests/install/check_install.sh BUILD_DIR
# EMBETTER_CONSUMER_FLAGS (optional) are added to every consumer compile and link, e.g. the sanitizer flags a
# sanitized library needs in its users too.
set -euo pipefail

build_dir=${1:?usage: check_install.sh BUILD_DIR}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
flags=${EMBETTER_CONSUMER_FLAGS:-}
cc=${CC:-cc}

work=$(mktemp -d "${TMPDIR:-/tmp}/embetter-install-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
prefix=$work/prefix

step() { printf '\n== %s\n' "$*"; }

step "install $build_dir into a temporary prefix"
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
pc_file=$(find "$prefix" -name embetter.pc -print -quit)
config_file=$(find "$prefix" -name embetterConfig.cmake -print -quit)
[ -n "$pc_file" ] || { echo "FAIL: no embetter.pc was installed under $prefix" >&2; exit 1; }
[ -n "$config_file" ] || { echo "FAIL: no embetterConfig.cmake was installed under $prefix" >&2; exit 1; }
echo "installed: ${pc_file#"$prefix"/}, ${config_file#"$prefix"/}"

# The programs must use the library just installed, not one found elsewhere on the system.
check_links_to_prefix() {
  local program=$1 resolved
  resolved=$(ldd "$program" | awk '/libembetter\.so/ { print $3 }')
  if [ -n "$resolved" ]; then
    case $(readlink -f "$resolved") in
      "$(readlink -f "$prefix")"/*) ;;
      *) echo "FAIL: $program loads libembetter from $resolved, not from $prefix" >&2; exit 1 ;;
    esac
  fi
}

step "CMake consumer: find_package(embetter) with CMAKE_PREFIX_PATH"
cmake -S "$here/consumer" -B "$work/cmake-consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_EXE_LINKER_FLAGS="$flags" >/dev/null
cmake --build "$work/cmake-consumer" >/dev/null
for program in consumer_shared consumer_static; do
  check_links_to_prefix "$work/cmake-consumer/$program"
  printf '%s: ' "$program"
  "$work/cmake-consumer/$program"
done
# ldd's output is captured first: with pipefail, `ldd | grep -q` fails whenever grep exits before ldd is done.
shared_libs=$(ldd "$work/cmake-consumer/consumer_shared")
static_libs=$(ldd "$work/cmake-consumer/consumer_static")
if ! grep -q 'libembetter\.so' <<<"$shared_libs"; then
  echo "FAIL: consumer_shared does not load libembetter.so" >&2; exit 1
fi
if grep -q 'libembetter\.so' <<<"$static_libs"; then
  echo "FAIL: consumer_static loads libembetter.so although it links embetter::embetter_static" >&2; exit 1
fi

export PKG_CONFIG_PATH="$(dirname "$pc_file")${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
libdir=$(pkg-config --variable=libdir embetter)
echo
echo "pkg-config: embetter $(pkg-config --modversion embetter): $(pkg-config --cflags --libs embetter)"

step "pkg-config consumer: cc main.c \$(pkg-config --cflags --libs embetter)"
# shellcheck disable=SC2046,SC2086  # word splitting of the flags is intended
"$cc" $flags "$here/consumer/main.c" -o "$work/pkgconfig-consumer" $(pkg-config --cflags --libs embetter) \
  -Wl,-rpath,"$libdir"
check_links_to_prefix "$work/pkgconfig-consumer"
printf 'pkgconfig-consumer: '
"$work/pkgconfig-consumer"

step "README's C sample, built with pkg-config"
# The sample is the ```c block that follows the marker line in README.md.
awk '/<!-- readme-c-sample -->/ { armed = 1; next }
     armed && /^```c$/ { inside = 1; next }
     inside && /^```$/ { exit }
     inside { print }' "$source_dir/README.md" > "$work/readme_sample.c"
if [ ! -s "$work/readme_sample.c" ]; then
  echo "FAIL: README.md has no \`\`\`c block after a <!-- readme-c-sample --> line" >&2; exit 1
fi
# shellcheck disable=SC2046,SC2086
"$cc" $flags -std=c11 -Wall -Wextra -Werror "$work/readme_sample.c" -o "$work/readme-sample" \
  $(pkg-config --cflags --libs embetter) -Wl,-rpath,"$libdir"
check_links_to_prefix "$work/readme-sample"
"$work/readme-sample"

echo
echo "install checks passed"
