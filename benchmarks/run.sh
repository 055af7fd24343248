#!/usr/bin/env bash
# Run libembetter's whole benchmark suite and print its tables (Markdown), e.g.
#   benchmarks/run.sh | tee benchmark-results.md
# or, with --vs-embetter, the side-by-side with PyPI's embetter 0.9.1 on PyTorch instead (benchmarks/vs_embetter.py;
# its venv comes from benchmarks/install-bench-deps.sh --pypi VENV, then EMBETTER_BENCH_PYTHON=VENV/bin/python):
#   EMBETTER_BENCH_PYTHON=VENV/bin/python benchmarks/run.sh --vs-embetter [--seeds 5 --repeats 1]
# Uses the repository's .venv when there is one (see python/README.md), else Debian's /usr/bin/python3;
# either must have libembetter installed. PyTorch comes from benchmarks/install-bench-deps.sh.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${EMBETTER_BENCH_PYTHON:-}"
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=/usr/bin/python3; fi
fi
if ! "$python" -c 'import libembetter' 2>/dev/null; then
  echo "run.sh: libembetter is not installed for $python; install it first:" >&2
  echo "  .venv/bin/pip install --no-build-isolation ./python" >&2
  exit 1
fi
if [ "${1:-}" = --vs-embetter ]; then
  shift
  exec "$python" "$repo/benchmarks/vs_embetter.py" "$@"
fi
exec "$python" "$repo/benchmarks/run.py" "$@"
