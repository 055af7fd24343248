# The libraries libembetter links, each found once here for every target of the build.
# A missing one stops the configure step with the Debian package that provides it, not a bare "not found".
#
# Sets EMBETTER_BLAS_TARGET (the imported target to link for CBLAS) and EMBETTER_BLAS_DEFINITIONS (what
# src/blas.h needs to know which BLAS it maps to).

function(embetter_missing what debian_package)
  message(FATAL_ERROR
    "libembetter needs ${what}, which was not found. On Debian/Ubuntu: sudo apt-get install ${debian_package} "
    "(scripts/install-deps.sh installs everything the build needs).")
endfunction()

find_package(PkgConfig QUIET)
if(NOT PKG_CONFIG_FOUND)
  embetter_missing("pkg-config (to find OpenBLAS, utf8proc and json-c)" pkg-config)
endif()

find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  embetter_missing("zlib's headers and library (zlib.h)" zlib1g-dev)
endif()

pkg_check_modules(UTF8PROC QUIET IMPORTED_TARGET libutf8proc)
if(NOT UTF8PROC_FOUND)
  embetter_missing("utf8proc's headers and library (utf8proc.h, pkg-config module libutf8proc)" libutf8proc-dev)
endif()

pkg_check_modules(JSONC QUIET IMPORTED_TARGET json-c)
if(NOT JSONC_FOUND)
  embetter_missing("json-c's headers and library (json.h, pkg-config module json-c)" libjson-c-dev)
endif()

find_package(Threads REQUIRED)

if(EMBETTER_BLAS STREQUAL "system")
  pkg_check_modules(OPENBLAS QUIET IMPORTED_TARGET openblas)
  if(NOT OPENBLAS_FOUND)
    embetter_missing("OpenBLAS (cblas.h, pkg-config module openblas)" libopenblas-dev)
  endif()
  set(EMBETTER_BLAS_TARGET PkgConfig::OPENBLAS)
  set(EMBETTER_BLAS_DEFINITIONS "")
elseif(EMBETTER_BLAS STREQUAL "scipy-openblas32")
  # The wheel installs a CMake package (OpenBLASConfig.cmake defining OpenBLAS::OpenBLAS) inside itself; the
  # Python interpreter that has the wheel says where. Inside a pip build that is the isolated build environment.
  if(NOT EMBETTER_SCIPY_OPENBLAS_DIR)
    find_package(Python 3.11 REQUIRED COMPONENTS Interpreter)
    execute_process(
      COMMAND "${Python_EXECUTABLE}" -c "import scipy_openblas32; print(scipy_openblas32.get_lib_dir())"
      OUTPUT_VARIABLE _eb_openblas_lib RESULT_VARIABLE _eb_openblas_status ERROR_VARIABLE _eb_openblas_error
      OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT _eb_openblas_status EQUAL 0)
      message(FATAL_ERROR
        "EMBETTER_BLAS=scipy-openblas32, but ${Python_EXECUTABLE} cannot import scipy_openblas32 "
        "(pip install scipy-openblas32, or set EMBETTER_SCIPY_OPENBLAS_DIR to its lib directory):\n"
        "${_eb_openblas_error}")
    endif()
    set(EMBETTER_SCIPY_OPENBLAS_DIR "${_eb_openblas_lib}" CACHE PATH "lib directory of the scipy-openblas32 wheel")
  endif()
  find_package(OpenBLAS CONFIG REQUIRED
    PATHS "${EMBETTER_SCIPY_OPENBLAS_DIR}/cmake/openblas" NO_DEFAULT_PATH)
  set(EMBETTER_BLAS_TARGET OpenBLAS::OpenBLAS)
  set(EMBETTER_BLAS_DEFINITIONS EB_BLAS_SCIPY_OPENBLAS)
  message(STATUS "libembetter links scipy-openblas32 ${OpenBLAS_VERSION} from ${EMBETTER_SCIPY_OPENBLAS_DIR}")
else()
  message(FATAL_ERROR "EMBETTER_BLAS is '${EMBETTER_BLAS}'; it must be 'system' or 'scipy-openblas32'")
endif()
