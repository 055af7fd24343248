/*
 * eb_blas_info reports the BLAS as it really runs: the test re-executes itself
 * with OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS set (OpenBLAS reads them
 * when it loads) and checks that the child reports exactly those settings,
 * including a fallback to old kernels and the advice to leave it. The advice
 * itself is checked on injected core names and CPU instruction sets. Every
 * check holds for both BLAS builds (CMake option EMBETTER_BLAS): the system
 * OpenBLAS and the scipy-openblas32 wheel.
 */
/* fork, execv, pipe, setenv: POSIX, hidden under strict -std=c11 without this. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "embetter/embetter.h"

static const char REPORT_FLAG[] = "--report-blas";
/*
 * Kernels older than any CPU this runs on, which OpenBLAS 0.3.21 (Debian 12)
 * and 0.3.34 (scipy-openblas32) both run when asked and report under this
 * name; 0.3.34 has no Prescott kernels any more and runs Katmai instead.
 */
static const char OLD_CORE[] = "Nehalem";
static char self_path[4096];

static bool is_isa_name(const char *name)
{
    static const char *const names[] = {"avx512", "avx2", "avx", "sse2"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strcmp(name, names[i]) == 0)
            return true;
    }
    return false;
}

static void null_output_is_refused(void **state)
{
    (void)state;
    assert_int_equal(eb_blas_info(NULL), EB_ERR_NULL_POINTER);
}

static void reports_openblas_in_this_process(void **state)
{
    (void)state;
    eb_blas_config config;
    memset(&config, 0x55, sizeof config);
    assert_int_equal(eb_blas_info(&config), EB_OK);
    /* The build links an OpenBLAS (CMake requires one), so every field must be filled in. */
    assert_true(strcmp(config.library, "OpenBLAS") == 0 || strcmp(config.library, "scipy-openblas32") == 0);
    assert_true(strlen(config.version) > 0);
    /* The version is the one in OpenBLAS's own build description, which starts with the name. */
    char expected_start[EB_BLAS_BUILD_SIZE];
    snprintf(expected_start, sizeof expected_start, "OpenBLAS %s ", config.version);
    assert_memory_equal(config.build, expected_start, strlen(expected_start));
    assert_true(strlen(config.core) > 0);
    assert_non_null(strstr(config.build, config.core));
    assert_true(strcmp(config.threading, "pthreads") == 0 || strcmp(config.threading, "OpenMP") == 0 ||
                strcmp(config.threading, "sequential") == 0);
    assert_true(config.threads >= 1);
#if defined(__x86_64__)
    assert_true(is_isa_name(config.cpu_vector_isa));
#endif
    const char *advice = eb_blas_recommended_coretype(config.core, config.cpu_vector_isa);
    assert_string_equal(config.recommended_coretype, advice == NULL ? "" : advice);
}

static void advice_follows_core_and_cpu(void **state)
{
    (void)state;
    /* The fallback case this exists for, and its AVX2 twin. */
    assert_string_equal(eb_blas_recommended_coretype("Prescott", "avx512"), "SkylakeX");
    assert_string_equal(eb_blas_recommended_coretype("Prescott", "avx2"), "Haswell");
    assert_string_equal(eb_blas_recommended_coretype("Nehalem", "avx2"), "Haswell");
    assert_string_equal(eb_blas_recommended_coretype("Katmai", "avx512"), "SkylakeX");
    assert_string_equal(eb_blas_recommended_coretype("Prescott", "avx"), "Sandybridge");
    /* Core names are matched without regard to case. */
    assert_string_equal(eb_blas_recommended_coretype("PRESCOTT", "avx512"), "SkylakeX");
    assert_string_equal(eb_blas_recommended_coretype("haswell", "avx512"), "SkylakeX");
    /* Kernels that already use what the CPU has: nothing to gain. */
    assert_null(eb_blas_recommended_coretype("SkylakeX", "avx512"));
    assert_null(eb_blas_recommended_coretype("Cooperlake", "avx512"));
    assert_null(eb_blas_recommended_coretype("Zen", "avx2"));
    assert_null(eb_blas_recommended_coretype("Haswell", "avx2"));
    assert_null(eb_blas_recommended_coretype("Prescott", "sse2"));
    /* Kernels wider than the CPU: not a slowdown to fix by a coretype (it would crash). */
    assert_null(eb_blas_recommended_coretype("SkylakeX", "avx2"));
    /* What is not known gives no advice rather than a guess. */
    assert_null(eb_blas_recommended_coretype("ARMV8", "avx512"));
    assert_null(eb_blas_recommended_coretype("Prescott", ""));
    assert_null(eb_blas_recommended_coretype("Prescott", "avx1024"));
    assert_null(eb_blas_recommended_coretype("", "avx512"));
    assert_null(eb_blas_recommended_coretype(NULL, "avx512"));
    assert_null(eb_blas_recommended_coretype("Prescott", NULL));
}

/* Run this program again with the environment given, in report mode; its report goes into out. */
static void run_child(const char *coretype, const char *threads, char *out, size_t size)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        if (dup2(fds[1], STDOUT_FILENO) < 0)
            _exit(126);
        setenv("OPENBLAS_CORETYPE", coretype, 1);
        setenv("OPENBLAS_NUM_THREADS", threads, 1);
        char *args[] = {self_path, (char *)REPORT_FLAG, NULL};
        execv(self_path, args);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t got;
    while (used + 1 < size && (got = read(fds[0], out + used, size - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    close(fds[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void environment_settings_are_what_it_reports(void **state)
{
    (void)state;
    eb_blas_config here;
    assert_int_equal(eb_blas_info(&here), EB_OK);
    char report[512], expected[512];

    run_child(OLD_CORE, "1", report, sizeof report);
    const char *advice = eb_blas_recommended_coretype(OLD_CORE, here.cpu_vector_isa);
    snprintf(expected, sizeof expected, "core=%s threads=1 recommended=%s\n", OLD_CORE, advice == NULL ? "" : advice);
    assert_string_equal(report, expected);
#if defined(__x86_64__)
    /* Every x86-64 CPU of the last decade has AVX2, so the old kernels always have a remedy here. */
    if (strcmp(here.cpu_vector_isa, "avx512") == 0 || strcmp(here.cpu_vector_isa, "avx2") == 0)
        assert_non_null(advice);
#endif

    /* The kernels for the CPU itself: no advice, and the thread count follows the variable too. */
    const char *native = strcmp(here.cpu_vector_isa, "avx512") == 0 ? "SkylakeX"
                         : strcmp(here.cpu_vector_isa, "avx2") == 0 ? "Haswell"
                                                                    : NULL;
    if (native != NULL) {
        run_child(native, "2", report, sizeof report);
        snprintf(expected, sizeof expected, "core=%s threads=2 recommended=\n", native);
        assert_string_equal(report, expected);
    }
}

static int report_blas(void)
{
    eb_blas_config config;
    if (eb_blas_info(&config) != EB_OK)
        return 1;
    printf("core=%s threads=%d recommended=%s\n", config.core, config.threads, config.recommended_coretype);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], REPORT_FLAG) == 0)
        return report_blas();
    ssize_t length = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
    if (length <= 0)
        return 1;
    self_path[length] = '\0';
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(null_output_is_refused),
        cmocka_unit_test(reports_openblas_in_this_process),
        cmocka_unit_test(advice_follows_core_and_cpu),
        cmocka_unit_test(environment_settings_are_what_it_reports),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
