"""Types of the cffi extension module that the build generates from the public C headers.

Its ffi and lib objects describe C: their attributes are the headers' functions,
types and constants, which only cffi knows at run time.
"""
from typing import Any

ffi: Any
lib: Any
