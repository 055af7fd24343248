"""Write the C source of the cffi out-of-line (API mode) module libembetter._native.

Run by CMake at build time (python/CMakeLists.txt), with the build
environment's Python and cffi. It only writes C: CMake compiles the result as
a Python extension module and links it to the library's own static target, so
the library is built one way, by CMake.

The declarations handed to cffi are generated from the public headers, so the
binding cannot drift from the C API:
  - embetter/embetter.h, the umbrella over version.h, common.h, finetune.h,
    encoder.h and blas.h, through the C preprocessor, with EB_API expanding to
    nothing;
  - the integer constants (#define EB_...) of those headers, which cffi
    resolves when the module is compiled;
  - the `extern "Python"` callback the C side calls after every epoch.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile

import cffi

MODULE_NAME = "libembetter._native"

# The C side calls this Python function after every epoch (see libembetter/_binding.py).
CALLBACK_DECLARATION = 'extern "Python" int embetter_on_epoch(size_t epoch, double loss, void *user_data);\n'

# Object-like macros whose value is not an integer constant cffi could expose.
NON_INTEGER_MACROS = {"EB_API", "EB_VERSION_STRING"}


def fail(message):
    sys.exit(f"generate_cffi.py: error: {message}")


def find_header(name, include_dirs):
    for directory in include_dirs:
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    fail(f"{name} is in none of the include directories {include_dirs}")


def preprocessed_header(compiler, include_dirs, header):
    """The public header after the C preprocessor, with EB_API expanding to nothing.

    Empty stand-ins for <stddef.h> and <stdint.h> keep the system's typedefs out
    of the output (cffi knows size_t and the fixed-width integers already), and
    defining __attribute__ away turns the visibility-attribute EB_API into nothing.
    """
    with tempfile.TemporaryDirectory() as stand_ins:
        for name in ("stddef.h", "stdint.h"):
            open(os.path.join(stand_ins, name), "w").close()
        command = [compiler, "-E", "-P", "-nostdinc", "-I", stand_ins]
        for directory in include_dirs:
            command += ["-I", directory]
        command += ["-D__attribute__(x)=", header]
        result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        fail(f"preprocessing {header} failed ({' '.join(command)}):\n{result.stderr}")
    return result.stdout


def included_headers(header, include_dirs):
    """header and every embetter/ header it includes, transitively (common.h, finetune.h, encoder.h, ...)."""
    pending, seen = [header], []
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.append(path)
        with open(path, encoding="utf-8") as f:
            names = re.findall(r'^\s*#\s*include\s+"(embetter/[^"]+)"', f.read(), flags=re.MULTILINE)
        pending += [find_header(name, include_dirs) for name in names]
    return seen


def integer_macros(headers):
    """`#define NAME ...` lines for the headers' integer constants, which cffi resolves at compile time."""
    names = []
    for header in headers:
        with open(header, encoding="utf-8") as f:
            for line in f:
                match = re.match(r"\s*#\s*define\s+(EB_[A-Z0-9_]+)\s+(\S.*)$", line)
                if match and match.group(1) not in NON_INTEGER_MACROS and not match.group(2).startswith('"'):
                    names.append(match.group(1))
    return "".join(f"#define {name} ...\n" for name in names)


def defined_in_sources(function_name, source_texts):
    """Whether some library source defines function_name (a declaration at column 0 followed by a body)."""
    definition = re.compile(
        r"^[A-Za-z_][^;(\n]*\b" + re.escape(function_name) + r"\s*\([^;]*?\)\s*\{", re.MULTILINE
    )
    return any(definition.search(text) for text in source_texts)


def without_unimplemented_functions(declarations, sources):
    """declarations minus the functions no library source defines yet.

    The header can run ahead of the sources while a feature is being written;
    binding such a declaration would make the extension fail to load with an
    undefined symbol, so it is left out and named on stderr.
    """
    source_texts = []
    for path in sources:
        with open(path, encoding="utf-8") as f:
            source_texts.append(f.read())
    # A name directly followed by "(" opens a function declaration; "(*" would be a function pointer.
    declared = re.findall(r"\b(eb_\w+)\s*\((?!\s*\*)[^;{}]*\)\s*;", declarations)
    missing = sorted({name for name in declared if not defined_in_sources(name, source_texts)})
    for name in missing:
        declarations = re.sub(r"[^;{}]*\b" + re.escape(name) + r"\s*\([^;{}]*\)\s*;", "\n", declarations)
    if missing:
        print("libembetter build: not binding functions the C sources do not define yet: " + ", ".join(missing),
              file=sys.stderr)
    return declarations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compiler", required=True, help="the C compiler, used as preprocessor")
    parser.add_argument("--include-dir", action="append", required=True,
                        help="where embetter/*.h are found (the source tree's include/ and the generated one)")
    parser.add_argument("--sources", nargs="+", required=True, help="the library's C sources")
    parser.add_argument("--output", required=True, help="the C file to write")
    args = parser.parse_args()

    header = find_header(os.path.join("embetter", "embetter.h"), args.include_dir)
    declarations = without_unimplemented_functions(
        preprocessed_header(args.compiler, args.include_dir, header), args.sources)
    ffibuilder = cffi.FFI()
    ffibuilder.cdef(declarations + integer_macros(included_headers(header, args.include_dir)) + CALLBACK_DECLARATION)
    ffibuilder.set_source(MODULE_NAME, '#include "embetter/embetter.h"\n')
    ffibuilder.emit_c_code(args.output)


if __name__ == "__main__":
    main()
