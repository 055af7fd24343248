#!/usr/bin/env bash
# Print pip constraints that pin scikit-learn, NumPy, pandas and SciPy to the versions Debian 12 installed
# (python3-sklearn, python3-numpy, python3-pandas, python3-scipy): the oldest versions libembetter supports.
# A venv made with --system-site-packages installs libembetter's other dependencies from PyPI under these
# constraints without ever upgrading the four.
set -euo pipefail
/usr/bin/python3 -c '
import importlib.metadata
import sys
for name in ("numpy", "scikit-learn", "pandas", "scipy"):
    try:
        print(f"{name}=={importlib.metadata.version(name)}")
    except importlib.metadata.PackageNotFoundError:
        sys.exit(f"oldest-constraints: {name} is not installed for /usr/bin/python3 (scripts/install-deps.sh installs it)")
'
