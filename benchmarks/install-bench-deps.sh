#!/usr/bin/env bash
# The benchmark suite's extra dependencies. Two forms:
#
#   benchmarks/install-bench-deps.sh
#     Debian packages for benchmarks/run.py: PyTorch (the reference implementations; large, so it is not in
#     scripts/install-deps.sh), gensim (the word-vector encoder's yardstick), threadpoolctl (thread limits).
#
#   benchmarks/install-bench-deps.sh --pypi VENV
#     A venv from PyPI for benchmarks/vs_embetter.py (the side-by-side with the real embetter 0.9.1):
#     torch 2.13.0 (CPU), embetter 0.9.1, and libembetter built from this checkout. Then:
#       EMBETTER_BENCH_PYTHON=VENV/bin/python benchmarks/run.sh --vs-embetter
#
# PyTorch is a benchmark dependency only. torch is installed first and pinned in every later pip call, so
# nothing after it can swap it for another build: from PyPI proper, any Linux torch other than a local CPU
# wheel is a CUDA build of several GB (set EMBETTER_BENCH_TORCH to another spec, e.g. a wheel file, to
# choose). embetter.finetune imports sentence-transformers at import time (its SbertLearner), so that comes
# too, without extras of embetter itself.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

if [ "${1:-}" = --pypi ]; then
  venv="${2:?usage: $0 --pypi VENV_DIR}"
  torch_spec="${EMBETTER_BENCH_TORCH:-torch==2.13.0}"
  # The newest scikit-learn by default (libembetter supports 1.2 to 1.9); EMBETTER_BENCH_SKLEARN pins another.
  sklearn_spec="${EMBETTER_BENCH_SKLEARN:-scikit-learn}"
  python="${PYTHON:-python3}"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  pip=("$venv/bin/python" -m pip install --quiet)
  "${pip[@]}" "$torch_spec"
  "${pip[@]}" "$torch_spec" embetter==0.9.1 sentence-transformers "$sklearn_spec" numpy pandas threadpoolctl
  if [ -f "$repo/pyproject.toml" ]; then
    # The PEP 517 build at the repository root (scikit-build-core): build isolation, requirements from PyPI.
    "${pip[@]}" "$torch_spec" "$sklearn_spec" "$repo"
  else
    # The older setuptools + cffi build under python/, which builds against the venv's own packages.
    "${pip[@]}" "$torch_spec" setuptools wheel cffi
    "${pip[@]}" --no-build-isolation "$torch_spec" "$sklearn_spec" "$repo/python"
  fi
  "$venv/bin/python" - <<'EOF'
from importlib.metadata import version
import embetter.finetune, libembetter.finetune, torch  # all three import side by side
print("install-bench-deps:", ", ".join(f"{name} {version(name)}" for name in
      ("torch", "embetter", "libembetter", "scikit-learn", "numpy")))
EOF
  exit 0
fi

packages=(python3-gensim python3-threadpoolctl python3-torch)
missing=()
for package in "${packages[@]}"; do
  [ "$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null)" = installed ] || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-bench-deps: ${packages[*]} are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then as_root=(); else as_root=(sudo); fi
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
