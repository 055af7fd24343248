/* Peak single-precision FMA throughput of this machine's cores, for benchmarks/run.py's bound table.
 *
 * Nothing here touches memory inside the timed loop: every FMA reads and writes registers only, and the
 * accumulators are independent of each other, so the only limit left is how many FMAs the core can retire
 * per cycle.  That is the ceiling no training code (which also has to load operands) can pass.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <time.h>

#include "peak_flops.h"

/* FMA latency is 4 cycles on recent Intel cores and 2 FMAs can issue per cycle, so at least 8 chains must be in
 * flight; 16 leaves slack for cores with longer latency and still fits in the 32 zmm registers beside the two
 * operands.  AVX2 has only 16 ymm registers, hence 12 there. */
#define CHAINS_512 16
#define CHAINS_256 12

/* Operands the compiler cannot see as constants, so it can neither fold the chains nor prove them unused. */
static volatile float multiplier = 0.99999994f, addend = 1e-7f;

#define REPEAT12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)
#define REPEAT16(op) REPEAT12(op) op(12) op(13) op(14) op(15)

/* acc = acc * m + a converges to a / (1 - m) ~ 1.7: no overflow and no denormals (which would slow some
 * cores down and understate the peak), however long the loop runs. */
__attribute__((target("avx512f"))) static double loop_512(long long iterations) {
    __m512 m = _mm512_set1_ps(multiplier), a = _mm512_set1_ps(addend);
#define DECLARE(i) __m512 acc##i = _mm512_set1_ps(1.0f + (i) * 1e-3f);
    REPEAT16(DECLARE)
#undef DECLARE
    for (long long n = 0; n < iterations; n++) {
#define STEP(i) acc##i = _mm512_fmadd_ps(acc##i, m, a);
        REPEAT16(STEP)
#undef STEP
    }
    /* Summing into the result the caller keeps is what makes every chain live. */
    __m512 sum = _mm512_setzero_ps();
#define CONSUME(i) sum = _mm512_add_ps(sum, acc##i);
    REPEAT16(CONSUME)
#undef CONSUME
    return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) static double loop_256(long long iterations) {
    __m256 m = _mm256_set1_ps(multiplier), a = _mm256_set1_ps(addend);
#define DECLARE(i) __m256 acc##i = _mm256_set1_ps(1.0f + (i) * 1e-3f);
    REPEAT12(DECLARE)
#undef DECLARE
    for (long long n = 0; n < iterations; n++) {
#define STEP(i) acc##i = _mm256_fmadd_ps(acc##i, m, a);
        REPEAT12(STEP)
#undef STEP
    }
    __m256 sum = _mm256_setzero_ps();
#define CONSUME(i) sum = _mm256_add_ps(sum, acc##i);
    REPEAT12(CONSUME)
#undef CONSUME
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    double total = 0.0;
    for (int i = 0; i < 8; i++) total += lanes[i];
    return total;
}

/* 512 or 256: the register width in bits the loop runs at; 0 when the CPU (or the OS) offers neither
 * AVX-512F nor AVX2 with FMA. */
int peak_fma_width(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 256;
    return 0;
}

/* An FMA is two flops in each 32-bit lane. */
static double flops_per_iteration(int width) {
    return 2.0 * (width / 32) * (width == 512 ? CHAINS_512 : CHAINS_256);
}

/* Per thread, so a caller can size a run to a duration from a probe's GFLOP/s. */
double peak_fma_flops_per_iteration(void) {
    return flops_per_iteration(peak_fma_width());
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Workers wait here until every one of them exists, so they run side by side; a thread that cannot be
 * created turns the gate to CANCEL and the others leave without running. */
enum { WAIT, GO, CANCEL };
struct gate {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int state;
};

static int gate_wait(struct gate *g) {
    pthread_mutex_lock(&g->lock);
    while (g->state == WAIT) pthread_cond_wait(&g->changed, &g->lock);
    int state = g->state;
    pthread_mutex_unlock(&g->lock);
    return state;
}

static void gate_open(struct gate *g, int state) {
    pthread_mutex_lock(&g->lock);
    g->state = state;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->lock);
}

struct worker {
    pthread_t thread;
    int cpu, width;
    long long iterations;
    struct gate *gate;
    double begin, end, checksum;
};

static void *run_worker(void *arg) {
    struct worker *w = arg;
    /* Two threads sharing one core would each see half its peak and report the same total as one thread;
     * a CPU each is the configuration whose sum is the machine's peak. */
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    if (gate_wait(w->gate) != GO) return NULL;
    w->begin = now();
    w->checksum = w->width == 512 ? loop_512(w->iterations) : loop_256(w->iterations);
    w->end = now();
    return NULL;
}

/* Aggregate GFLOP/s of `threads` threads (each on its own allowed CPU while there are enough) running
 * `iterations` rounds of the loop at once: all their flops over the span from the first start to the last
 * finish, so a thread held up by another process counts against the figure rather than being left out.
 * The accumulators' sum goes to *checksum.  Returns 0 when the ISA is unsupported, -1 when a thread
 * cannot be created. */
double peak_fma_gflops(int threads, long long iterations, double *checksum) {
    int width = peak_fma_width();
    if (width == 0) return 0.0;
    if (threads < 1) threads = 1;
    struct worker *workers = calloc((size_t)threads, sizeof *workers);
    if (workers == NULL) return -1.0;
    struct gate gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, WAIT};
    cpu_set_t allowed;
    int have_mask = sched_getaffinity(0, sizeof allowed, &allowed) == 0;
    int next_cpu = 0, started = 0;
    for (int t = 0; t < threads; t++) {
        struct worker *w = &workers[t];
        w->cpu = -1;
        if (have_mask && threads > 1) {
            while (next_cpu < CPU_SETSIZE && !CPU_ISSET(next_cpu, &allowed)) next_cpu++;
            if (next_cpu < CPU_SETSIZE) w->cpu = next_cpu++;
        }
        w->width = width;
        w->iterations = iterations;
        w->gate = &gate;
        if (pthread_create(&w->thread, NULL, run_worker, w) != 0) break;
        started++;
    }
    gate_open(&gate, started == threads ? GO : CANCEL);
    double first = 0.0, last = 0.0, sum = 0.0;
    for (int t = 0; t < started; t++) {
        pthread_join(workers[t].thread, NULL);
        if (t == 0 || workers[t].begin < first) first = workers[t].begin;
        if (t == 0 || workers[t].end > last) last = workers[t].end;
        sum += workers[t].checksum;
    }
    free(workers);
    if (started < threads) return -1.0;
    if (checksum != NULL) *checksum = sum;
    double seconds = last - first;
    if (seconds <= 0.0) return -1.0;
    return threads * (double)iterations * flops_per_iteration(width) / seconds / 1e9;
}
