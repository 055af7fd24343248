"""cffi out-of-line API-mode build of libembetter._native.

The declarations handed to cffi are generated from the public header
include/embetter/embetter.h at build time, so the binding cannot drift from the
C API. The library's C sources are compiled straight into the extension; no
CMake build or installed libembetter is needed.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile

import cffi

PACKAGE_DIR = os.path.dirname(os.path.realpath(__file__))
REPO_ROOT = os.path.dirname(PACKAGE_DIR)
INCLUDE_DIR = os.path.join(REPO_ROOT, "include")
SOURCE_DIR = os.path.join(REPO_ROOT, "src")
PUBLIC_HEADER = os.path.join(INCLUDE_DIR, "embetter", "embetter.h")
VERSION_HEADER = os.path.join(INCLUDE_DIR, "embetter", "version.h")

# The C side calls this Python function after every epoch (see embetter/_binding.py).
CALLBACK_DECLARATION = 'extern "Python" int embetter_on_epoch(size_t epoch, double loss, void *user_data);\n'

# Object-like macros whose value is not an integer constant cffi could expose.
NON_INTEGER_MACROS = {"EB_API", "EB_VERSION_STRING"}


class BuildSetupError(RuntimeError):
    """The checkout or the machine lacks something the build needs."""


def require_checkout():
    missing = [p for p in (PUBLIC_HEADER, VERSION_HEADER, SOURCE_DIR) if not os.path.exists(p)]
    if missing:
        raise BuildSetupError(
            "embetter's Python package compiles libembetter from the repository it lives in, "
            "but these paths are missing: " + ", ".join(missing) + ". Build from a full checkout "
            "(pip install ./python from the repository root) rather than from a copied python/ directory."
        )


def library_sources():
    sources = sorted(
        os.path.join(SOURCE_DIR, name) for name in os.listdir(SOURCE_DIR) if name.endswith(".c")
    )
    if not sources:
        raise BuildSetupError(f"no C sources found in {SOURCE_DIR}")
    return sources


def c_compiler_command():
    configured = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    command = shlex.split(configured)
    if shutil.which(command[0]) is None:
        raise BuildSetupError(f"the C compiler {command[0]!r} was not found; install gcc (Debian: build-essential)")
    return command


def preprocessed_header():
    """The public header after the C preprocessor, with EB_API expanding to nothing.

    Empty stand-ins for <stddef.h> and <stdint.h> keep the system's typedefs out
    of the output (cffi knows size_t and the fixed-width integers already), and
    defining __attribute__ away turns the visibility-attribute EB_API into nothing.
    """
    with tempfile.TemporaryDirectory() as stand_ins:
        for name in ("stddef.h", "stdint.h"):
            open(os.path.join(stand_ins, name), "w").close()
        command = c_compiler_command() + [
            "-E", "-P", "-nostdinc", "-I", stand_ins, "-I", INCLUDE_DIR,
            "-D__attribute__(x)=", PUBLIC_HEADER,
        ]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildSetupError(
            f"preprocessing {PUBLIC_HEADER} failed ({' '.join(command)}):\n{result.stderr}"
        )
    return result.stdout


def defined_in_sources(function_name, source_texts):
    """Whether some library source defines function_name (a declaration at column 0 followed by a body)."""
    definition = re.compile(
        r"^[A-Za-z_][^;(\n]*\b" + re.escape(function_name) + r"\s*\([^;]*?\)\s*\{", re.MULTILINE
    )
    return any(definition.search(text) for text in source_texts)


def without_unimplemented_functions(declarations):
    """declarations minus the functions no library source defines yet.

    The header can run ahead of the sources while a feature is being written;
    binding such a declaration would make the extension fail to load with an
    undefined symbol, so it is left out and named on stderr.
    """
    source_texts = []
    for path in library_sources():
        with open(path, encoding="utf-8") as f:
            source_texts.append(f.read())
    # A name directly followed by "(" opens a function declaration; "(*" would be a function pointer.
    declared = re.findall(r"\b(eb_\w+)\s*\((?!\s*\*)[^;{}]*\)\s*;", declarations)
    missing = sorted({name for name in declared if not defined_in_sources(name, source_texts)})
    for name in missing:
        declarations = re.sub(r"[^;{}]*\b" + re.escape(name) + r"\s*\([^;{}]*\)\s*;", "\n", declarations)
    if missing:
        print("embetter build: not binding functions the C sources do not define yet: " + ", ".join(missing),
              file=sys.stderr)
    return declarations


def integer_macros():
    """`#define NAME ...` lines for the headers' integer constants, which cffi resolves at compile time."""
    names = []
    # embetter.h includes the other public headers (encoder.h); their constants count too.
    other_headers = sorted(
        os.path.join(INCLUDE_DIR, "embetter", name)
        for name in os.listdir(os.path.join(INCLUDE_DIR, "embetter"))
        if name.endswith(".h") and os.path.join(INCLUDE_DIR, "embetter", name) not in (VERSION_HEADER, PUBLIC_HEADER)
    )
    for header in [VERSION_HEADER, PUBLIC_HEADER] + other_headers:
        with open(header, encoding="utf-8") as f:
            for line in f:
                match = re.match(r"\s*#\s*define\s+(EB_[A-Z0-9_]+)\s+(\S.*)$", line)
                if match and match.group(1) not in NON_INTEGER_MACROS and not match.group(2).startswith('"'):
                    names.append(match.group(1))
    return "".join(f"#define {name} ...\n" for name in names)


# Third-party headers the C sources may include, with the pkg-config package that
# provides them, the Debian package to install, and flags for when pkg-config is missing.
NATIVE_DEPENDENCIES = {
    "cblas.h": ("openblas", "libopenblas-dev", [
        "-I/usr/include/x86_64-linux-gnu/openblas-pthread",
        "-L/usr/lib/x86_64-linux-gnu/openblas-pthread",
        "-lopenblas",
    ]),
    "zlib.h": ("zlib", "zlib1g-dev", ["-lz"]),
    "utf8proc.h": ("libutf8proc", "libutf8proc-dev", ["-lutf8proc"]),
    "json-c/json.h": ("json-c", "libjson-c-dev", ["-ljson-c"]),
}


def included_dependencies():
    """The NATIVE_DEPENDENCIES headers that some library source includes, so only those get linked."""
    found = set()
    for name in os.listdir(SOURCE_DIR):
        if name.endswith((".c", ".h")):
            with open(os.path.join(SOURCE_DIR, name), encoding="utf-8") as f:
                found.update(re.findall(r"^\s*#\s*include\s*<([^>]+)>", f.read(), flags=re.MULTILINE))
    return [header for header in NATIVE_DEPENDENCIES if header in found]


def dependency_flags():
    """include_dirs, library_dirs and libraries of the native dependencies the sources use."""
    include_dirs, library_dirs, libraries = [], [], []
    for header in included_dependencies():
        package, debian_package, fallback = NATIVE_DEPENDENCIES[header]
        try:
            result = subprocess.run(
                ["pkg-config", "--cflags", "--libs", package], capture_output=True, text=True, check=True
            )
            tokens = shlex.split(result.stdout)
        except (OSError, subprocess.CalledProcessError):
            tokens = fallback
        package_includes = [t[2:] for t in tokens if t.startswith("-I")]
        if not any(os.path.exists(os.path.join(d, header)) for d in package_includes + ["/usr/include"]):
            raise BuildSetupError(f"{header} was not found; install {debian_package}")
        include_dirs += package_includes
        library_dirs += [t[2:] for t in tokens if t.startswith("-L")]
        libraries += [t[2:] for t in tokens if t.startswith("-l")]
    return include_dirs, library_dirs, libraries


def make_ffibuilder():
    require_checkout()
    include_dirs, library_dirs, libraries = dependency_flags()
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(without_unimplemented_functions(preprocessed_header()) + integer_macros() + CALLBACK_DECLARATION)
    ffibuilder.set_source(
        "libembetter._native",
        '#include "embetter/embetter.h"\n',
        sources=library_sources(),
        include_dirs=[INCLUDE_DIR, SOURCE_DIR] + include_dirs,
        library_dirs=library_dirs,
        libraries=libraries + ["m"],
        define_macros=[("EMBETTER_BUILDING", None)],
        # The same flags the CMake build gives the library's objects.
        extra_compile_args=["-O3", "-std=c11", "-fvisibility=hidden", "-fno-math-errno"],
    )
    return ffibuilder


try:
    ffibuilder = make_ffibuilder()
except BuildSetupError as error:
    sys.exit(f"error: {error}")

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
