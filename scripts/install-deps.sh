#!/usr/bin/env bash
# Install every Debian package libembetter needs to build, test and run its demos (Debian 12).
# Safe to run again: when all packages are already installed it does nothing and never calls apt-get.
# Runs apt-get as root, or through sudo when started by another user.
set -euo pipefail

# One package a line; keep the list sorted within each group.
packages=(
  # build
  build-essential
  cmake
  git
  libopenblas-dev
  pkg-config
  zlib1g-dev
  # C tests
  libcmocka-dev
  valgrind
  # fuzzing (tests/fuzz: clang with libFuzzer and the sanitizer runtimes)
  clang-14
  libclang-rt-14-dev
  # Python package: pip builds it (scikit-build-core driving CMake) against python3-dev's headers in a venv
  # (python3-venv). Debian's scikit-learn, NumPy, pandas and SciPy are the oldest supported versions, which
  # the second Python test stage and the demo run on; the newest come from PyPI.
  python3
  python3-cffi
  python3-dask
  python3-dev
  python3-diskcache
  python3-distributed
  python3-gensim
  python3-ipykernel
  python3-ipywidgets
  python3-joblib
  python3-matplotlib
  python3-nbclient
  python3-nbformat
  python3-numpy
  python3-pandas
  python3-pil
  python3-pip
  python3-pytest
  python3-scipy
  python3-setuptools
  python3-sklearn
  python3-tqdm
  python3-threadpoolctl
  python3-venv
  python3-wheel
  # demo data and text processing
  fortunes
  libjson-c-dev
  libutf8proc-dev
)

is_installed() {
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

missing=()
for package in "${packages[@]}"; do
  is_installed "$package" || missing+=("$package")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages are installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: run this script as root (sudo is not installed)" >&2
  exit 1
fi

echo "install-deps: installing ${#missing[@]} missing packages: ${missing[*]}"
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"

still_missing=()
for package in "${missing[@]}"; do
  is_installed "$package" || still_missing+=("$package")
done
if [ ${#still_missing[@]} -ne 0 ]; then
  echo "install-deps: still not installed after apt-get: ${still_missing[*]}" >&2
  exit 1
fi
echo "install-deps: done"
