# Runs PROGRAM with the ;-separated ARGS and fails unless it exits with EXPECT_EXIT ("0" or "nonzero") and its
# combined stdout and stderr match every regex in the ;-separated EXPECT (all of them, unlike
# PASS_REGULAR_EXPRESSION, which accepts any one and ignores the exit code).
# cmake -DPROGRAM=... -DARGS=... -DEXPECT_EXIT=0 -DEXPECT=... -P expect_output.cmake
execute_process(COMMAND ${PROGRAM} ${ARGS} RESULT_VARIABLE exit_code OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
message("${all}")
if(EXPECT_EXIT STREQUAL "0" AND NOT exit_code STREQUAL "0")
  message(FATAL_ERROR "expected exit code 0, got ${exit_code}")
elseif(EXPECT_EXIT STREQUAL "nonzero" AND (exit_code STREQUAL "0" OR NOT exit_code MATCHES "^[0-9]+$"))
  # A non-numeric result is a crash (e.g. "Segmentation fault"), which is never the expected failure.
  message(FATAL_ERROR "expected a clean non-zero exit code, got '${exit_code}'")
endif()
foreach(pattern IN LISTS EXPECT)
  if(NOT all MATCHES "${pattern}")
    message(FATAL_ERROR "output does not match '${pattern}'")
  endif()
endforeach()
