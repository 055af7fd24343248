"""Build of the embetter Python package; metadata lives in pyproject.toml.

setup.py exists for what pyproject.toml cannot say: the version comes from the
C library's version.h and the extension module is a cffi build (build_native.py).
"""
import os
import re
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.realpath(__file__))
VERSION_HEADER = os.path.join(os.path.dirname(HERE), "include", "embetter", "version.h")


def library_version():
    try:
        with open(VERSION_HEADER, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        sys.exit(
            f"error: {VERSION_HEADER} is missing. The embetter Python package builds libembetter from the "
            "repository around python/, so install it from a full checkout: pip install ./python"
        )
    match = re.search(r'#define\s+EB_VERSION_STRING\s+"([^"]+)"', text)
    if match is None:
        sys.exit(f"error: no EB_VERSION_STRING found in {VERSION_HEADER}")
    return match.group(1)


# cffi_modules paths are relative to the working directory, which pip sets to this one.
os.chdir(HERE)
setup(
    version=library_version(),
    # Listed here rather than in pyproject.toml, whose [tool.setuptools] table setuptools 66 calls beta.
    packages=find_packages(include=["libembetter", "libembetter.*"]),
    cffi_modules=["build_native.py:ffibuilder"],
    # The extension's C sources live outside this directory (absolute paths), which
    # setuptools' package-data collection refuses; the package has no data files anyway.
    include_package_data=False,
    zip_safe=False,
)
