#!/usr/bin/env bash
# The benchmark suite's extra Debian packages: PyTorch (the reference implementations; large, so it is not
# in scripts/install-deps.sh), gensim (the word-vector encoder's yardstick), threadpoolctl (thread limits).
set -euo pipefail
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
