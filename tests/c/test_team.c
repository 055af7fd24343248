/*
 * The team of threads of src/workers.c that one training call splits its
 * products over. Its contract (src/internal.h): every chunk of a job runs
 * exactly once, on any of the team's threads, the caller's included, and
 * eb__team_run returns only when all have run; a NULL team is the caller's
 * thread alone. Jobs follow each other closely (the helpers still spinning)
 * or far apart (the helpers asleep), with chunk counts that change from one
 * job to the next; a mirrored job runs its second half after its first. Adam
 * split over a team gives eb__adam_step's bits.
 */
#ifdef __linux__
/* The CPU affinity calls and sched_getcpu, besides nanosleep. */
#  define _GNU_SOURCE
#else
/* nanosleep is POSIX, hidden under strict -std=c11 without this. */
#  define _POSIX_C_SOURCE 200809L
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

enum { MOST_CHUNKS = 64, JOBS = 1000 };

typedef struct job_record {
    atomic_size_t runs[MOST_CHUNKS + 1];
    atomic_size_t wrong_chunks; /* calls whose `chunks` was not what the job asked for */
    atomic_size_t off_caller;   /* chunks run on a thread other than the caller's */
    size_t asked;
    pthread_t caller;
    /* When set, a chunk run off the caller's thread sleeps this long: a helper the system stopped running. */
    long helper_sleep_ns;
} job_record;

static void sleep_ns(long ns)
{
    struct timespec t = {ns / 1000000000L, ns % 1000000000L};
    while (nanosleep(&t, &t) != 0)
        ;
}

static void record_chunk(void *opaque, size_t chunk, size_t chunks)
{
    job_record *r = opaque;
    if (chunks != r->asked)
        atomic_fetch_add(&r->wrong_chunks, 1);
    atomic_fetch_add(&r->runs[chunk < MOST_CHUNKS ? chunk : MOST_CHUNKS], 1);
    if (!pthread_equal(pthread_self(), r->caller)) {
        atomic_fetch_add(&r->off_caller, 1);
        if (r->helper_sleep_ns > 0)
            sleep_ns(r->helper_sleep_ns);
    }
}

static void record_init(job_record *r)
{
    for (size_t c = 0; c <= MOST_CHUNKS; c++)
        atomic_init(&r->runs[c], 0);
    atomic_init(&r->wrong_chunks, 0);
    atomic_init(&r->off_caller, 0);
    r->asked = 0;
    r->caller = pthread_self();
    r->helper_sleep_ns = 0;
}

/* A team of `threads` on a counting allocator: NULL exactly when threads < 2. */
static eb_team *start_team(size_t threads, counting_allocator *counter, eb_allocator *mem)
{
    *mem = counting_allocator_init(counter);
    eb_team *team = NULL;
    assert_int_equal(eb__team_start(threads, mem, &team), EB_OK);
    assert_true((team == NULL) == (threads < 2));
    return team;
}

/* Stops the team and checks that it gave back all it took. */
static void stop_team(eb_team *team, const eb_allocator *mem, const counting_allocator *counter)
{
    eb__team_stop(team, mem);
    assert_int_equal(counter->live_blocks, 0);
}

/*
 * A job that never returns (the caller waiting for a count of finished chunks that it never sees) would otherwise
 * hang until ctest's limit: a job of at most 64 trivial chunks takes far less than this, even under valgrind.
 */
enum { JOB_SECONDS_LIMIT = 20 };

static void job_never_returned(int signal)
{
    (void)signal;
    static const char message[] = "eb__team_run did not return within 20 s: its count of finished chunks never "
                                  "matched the job's (a chunk run twice, or one lost)\n";
    ssize_t ignored = write(STDERR_FILENO, message, sizeof message - 1);
    (void)ignored;
    _exit(1);
}

/*
 * One job of `chunks` chunks of fn (which records its chunks in r, through ctx), mirrored or not: each ran
 * exactly once, with the job's chunk count, and none beyond it.
 */
static void run_fn_and_check(eb_team *team, job_record *r, eb_team_fn fn, void *ctx, bool mirrored, size_t chunks,
                             size_t threads, size_t job)
{
    for (size_t c = 0; c <= MOST_CHUNKS; c++)
        atomic_store(&r->runs[c], 0);
    r->asked = chunks;
    signal(SIGALRM, job_never_returned);
    alarm(JOB_SECONDS_LIMIT);
    (mirrored ? eb__team_run_mirrored : eb__team_run)(team, chunks, fn, ctx);
    alarm(0);
    for (size_t c = 0; c <= MOST_CHUNKS; c++) {
        size_t runs = atomic_load(&r->runs[c]);
        if (runs != (c < chunks ? 1u : 0u))
            fail_msg("%zu threads, job %zu of %zu chunks: chunk %zu ran %zu times", threads, job, chunks, c, runs);
    }
    if (atomic_load(&r->wrong_chunks) != 0)
        fail_msg("%zu threads, job %zu: a chunk was told another chunk count than %zu", threads, job, chunks);
}

static void run_and_check(eb_team *team, job_record *r, size_t chunks, size_t threads, size_t job)
{
    run_fn_and_check(team, r, record_chunk, r, false, chunks, threads, job);
}

/* A NULL team, and a team of one, run every chunk on the caller's thread, in order. */
typedef struct order_record {
    size_t next;
    size_t out_of_order;
    pthread_t caller;
    size_t off_caller;
} order_record;

static void record_order(void *opaque, size_t chunk, size_t chunks)
{
    (void)chunks;
    order_record *r = opaque;
    if (chunk != r->next)
        r->out_of_order++;
    r->next = chunk + 1;
    if (!pthread_equal(pthread_self(), r->caller))
        r->off_caller++;
}

/* The chunk counts of consecutive jobs: every count from 0 to 64, each next to very different ones. */
static size_t chunks_of_job(size_t job) { return job % 2 ? (job * 7) % (MOST_CHUNKS + 1) : (job / 2) % 9; }

/*
 * Many consecutive jobs of one chunk count on one team (a step's phases always cut into JOB_CHUNKS), for every
 * team size; the counts in decreasing order.
 */
static void every_chunk_runs_once_on_consecutive_jobs_of_one_size(void **state)
{
    (void)state;
    static const size_t sizes[] = {64, 17, 8, 3, 2, 1, 0};
    for (size_t threads = 1; threads <= EB_TEAM_MAX_PARTS; threads++) {
        counting_allocator counter;
        eb_allocator mem;
        eb_team *team = start_team(threads, &counter, &mem);
        job_record r;
        record_init(&r);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
            for (size_t job = 0; job < JOBS / 4; job++)
                run_and_check(team, &r, sizes[k], threads, job);
        stop_team(team, &mem, &counter);
    }
}

/*
 * 1000 consecutive jobs whose chunk count changes every job (0 to 64, small next to large), for every team size:
 * a helper still reading the previous job must neither take a chunk of the next one nor one past its end.
 */
static void every_chunk_runs_once_when_the_count_changes(void **state)
{
    (void)state;
    for (size_t threads = 1; threads <= EB_TEAM_MAX_PARTS; threads++) {
        counting_allocator counter;
        eb_allocator mem;
        eb_team *team = start_team(threads, &counter, &mem);
        job_record r;
        record_init(&r);
        for (size_t job = 0; job < JOBS; job++)
            run_and_check(team, &r, chunks_of_job(job), threads, job);
        stop_team(team, &mem, &counter);
    }
}

/* Past EB_TEAM_MAX_CHUNKS chunks a job runs on the caller alone, every chunk still once and in order. */
static void more_chunks_than_a_team_shares_run_on_the_caller(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem;
    eb_team *team = start_team(3, &counter, &mem);
    const size_t counts[] = {EB_TEAM_MAX_CHUNKS, (size_t)EB_TEAM_MAX_CHUNKS + 1};
    for (size_t k = 0; k < 2; k++) {
        job_record r;
        record_init(&r);
        r.asked = counts[k];
        eb__team_run(team, counts[k], record_chunk, &r);
        size_t total = 0;
        for (size_t c = 0; c <= MOST_CHUNKS; c++)
            total += atomic_load(&r.runs[c]);
        assert_int_equal(total, counts[k]);
        for (size_t c = 0; c < MOST_CHUNKS; c++)
            assert_int_equal(atomic_load(&r.runs[c]), 1);
        assert_int_equal(atomic_load(&r.wrong_chunks), 0);
        if (counts[k] > EB_TEAM_MAX_CHUNKS) {
            assert_int_equal(atomic_load(&r.off_caller), 0);
            order_record o = {0, 0, pthread_self(), 0};
            eb__team_run(team, counts[k], record_order, &o);
            assert_int_equal(o.next, counts[k]);
            assert_int_equal(o.out_of_order, 0);
            assert_int_equal(o.off_caller, 0);
        }
    }
    stop_team(team, &mem, &counter);
}

/* Helpers that waited long enough to sleep wake for the next job, from 0 to 64 chunks. */
static void every_chunk_runs_once_on_jobs_apart(void **state)
{
    (void)state;
    static const size_t team_sizes[] = {2, 3, 8};
    for (size_t t = 0; t < sizeof team_sizes / sizeof team_sizes[0]; t++) {
        counting_allocator counter;
        eb_allocator mem;
        eb_team *team = start_team(team_sizes[t], &counter, &mem);
        job_record r;
        record_init(&r);
        for (size_t job = 0; job < 24; job++) {
            /* Past the helpers' spin (0.3 ms) and the caller's wait before it works alone (1 ms). */
            sleep_ns(job % 3 == 0 ? 3000000L : 1500000L);
            run_and_check(team, &r, chunks_of_job(job * 5 + 1), team_sizes[t], job);
        }
        stop_team(team, &mem, &counter);
    }
}

/*
 * A helper that holds its chunk for far longer than the caller waits (as when the system runs something else
 * on its core): its chunk still runs once, the caller does not return before it is done, and later jobs still
 * run every chunk once.
 */
static void a_stalled_helper_delays_nothing_twice(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem;
    eb_team *team = start_team(4, &counter, &mem);
    job_record r;
    record_init(&r);
    r.helper_sleep_ns = 3000000L;
    for (size_t job = 0; job < 20; job++)
        run_and_check(team, &r, 8 + job % 5, 4, job);
    r.helper_sleep_ns = 0;
    for (size_t job = 0; job < 200; job++)
        run_and_check(team, &r, chunks_of_job(job), 4, job);
    stop_team(team, &mem, &counter);
}

/* A chunk that takes 50 us: long enough for a helper that was asleep to wake while the caller works. */
static void record_slow_chunk(void *opaque, size_t chunk, size_t chunks)
{
    sleep_ns(50000L);
    record_chunk(opaque, chunk, chunks);
}

/*
 * A helper that the system stops for longer than the caller waits (1 ms) sends the caller on alone. The helper
 * runs again later, as another process's threads leave its core: within a few of the caller's tries (after
 * 2, 4, 8 ... ms alone) the helper has work again, and every chunk still runs once.
 */
static void a_team_that_went_solo_gets_its_helper_back(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem;
    eb_team *team = start_team(2, &counter, &mem);
    job_record r;
    record_init(&r);
    r.helper_sleep_ns = 3000000L;
    for (size_t job = 0; job < 1000 && atomic_load(&r.off_caller) == 0; job++)
        run_fn_and_check(team, &r, record_slow_chunk, &r, false, 8, 2, job);
    assert_true(atomic_load(&r.off_caller) > 0);
    r.helper_sleep_ns = 0;
    atomic_store(&r.off_caller, 0);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    double elapsed = 0.0;
    size_t job = 0;
    /* A caller alone for good would never give the helper a chunk again: 10 s is hundreds of tries' time. */
    while (atomic_load(&r.off_caller) == 0 && elapsed < 10.0) {
        run_fn_and_check(team, &r, record_slow_chunk, &r, false, 8, 2, job++);
        clock_gettime(CLOCK_MONOTONIC, &now);
        elapsed = (double)(now.tv_sec - start.tv_sec) + 1e-9 * (double)(now.tv_nsec - start.tv_nsec);
    }
    if (atomic_load(&r.off_caller) == 0)
        fail_msg("after the helper stalled, %zu jobs over %.1f s ran on the caller alone", job, elapsed);
    stop_team(team, &mem, &counter);
}

/*
 * Valgrind runs one thread at a time, so a line bounced between two threads waits for its scheduler at every
 * bounce and the probe always gives up. Its loader preloads vgpreload_*.so into the program it runs.
 */
static bool under_valgrind(void)
{
    const char *preload = getenv("LD_PRELOAD");
    return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

/*
 * eb__team_line_seconds: 0 without a team; with one, a one-way time well under the 1 ms it waits for a helper
 * (0 when no helper answered), nonzero at least once in a few tries when two CPUs run both threads at once
 * (not under valgrind), and the team's next jobs run every chunk once, whatever the team's size.
 */
static void the_line_probe_measures_and_leaves_jobs_whole(void **state)
{
    (void)state;
    assert_true(eb__team_line_seconds(NULL) == 0.0);
    static const size_t sizes[] = {2, 4};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        counting_allocator counter;
        eb_allocator mem;
        eb_team *team = start_team(sizes[s], &counter, &mem);
        double fastest = 0.0;
        for (size_t probe = 0; probe < 20; probe++) {
            double seconds = eb__team_line_seconds(team);
            assert_true(seconds >= 0.0 && seconds < 1e-3);
            if (seconds > 0.0 && (fastest == 0.0 || seconds < fastest))
                fastest = seconds;
        }
        if (sysconf(_SC_NPROCESSORS_ONLN) >= 2 && !under_valgrind()) {
            if (fastest == 0.0)
                fail_msg("no helper of a team of %zu answered in 20 probes", sizes[s]);
            /* Even across sockets a line moves in well under 10 us. */
            assert_true(fastest < 10e-6);
        }
        job_record r;
        record_init(&r);
        for (size_t job = 0; job < 200; job++)
            run_and_check(team, &r, chunks_of_job(job), sizes[s], job);
        stop_team(team, &mem, &counter);
    }
}

static atomic_bool spinners_stop;

static void *spin_until_stopped(void *unused)
{
    (void)unused;
    while (!atomic_load(&spinners_stop))
        ;
    return NULL;
}

/*
 * With every CPU also busy with a thread that spins, helpers run in time slices: probes then give up now and
 * then, at either end, and each still returns (within the alarm of run_fn_and_check's jobs), in range, with
 * the team's next job whole.
 */
static void the_line_probe_returns_when_the_helper_stalls(void **state)
{
    (void)state;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t spinners = cpus < 1 ? 1 : cpus > 8 ? 8 : (size_t)cpus;
    pthread_t threads[8];
    atomic_store(&spinners_stop, false);
    for (size_t t = 0; t < spinners; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, spin_until_stopped, NULL), 0);
    counting_allocator counter;
    eb_allocator mem;
    eb_team *team = start_team(2, &counter, &mem);
    job_record r;
    record_init(&r);
    signal(SIGALRM, job_never_returned);
    for (size_t probe = 0; probe < 100; probe++) {
        alarm(JOB_SECONDS_LIMIT);
        double seconds = eb__team_line_seconds(team);
        alarm(0);
        assert_true(seconds >= 0.0 && seconds < 1e-3);
        run_and_check(team, &r, 8, 2, probe);
    }
    stop_team(team, &mem, &counter);
    atomic_store(&spinners_stop, true);
    for (size_t t = 0; t < spinners; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
}

/*
 * Mirrored jobs (eb__team_run_mirrored), as the forward product in halves runs: chunk chunks - 1 - c starts
 * only once chunk c of the first half is done. Whatever the team's size and whoever is slow, every chunk runs
 * once, none of the second half before its first-half chunk, and the job returns.
 */
typedef struct mirrored_record {
    job_record base;
    atomic_bool done[MOST_CHUNKS];
    atomic_size_t early; /* second-half chunks that started before their first-half chunk was done */
    long first_half_ns;  /* how long a first-half chunk takes */
} mirrored_record;

static void record_mirrored(void *opaque, size_t chunk, size_t chunks)
{
    mirrored_record *r = opaque;
    size_t half = chunks / 2;
    /* With an odd count the middle chunk waits for none. */
    if (chunk >= half && chunks - 1 - chunk < half &&
        !atomic_load_explicit(&r->done[chunks - 1 - chunk], memory_order_acquire))
        atomic_fetch_add(&r->early, 1);
    if (chunk < half && r->first_half_ns > 0)
        sleep_ns(r->first_half_ns);
    record_chunk(&r->base, chunk, chunks);
    if (chunk < MOST_CHUNKS)
        atomic_store_explicit(&r->done[chunk], true, memory_order_release);
}

static void mirrored_jobs_run_the_second_half_after_the_first(void **state)
{
    (void)state;
    for (size_t threads = 1; threads <= EB_TEAM_MAX_PARTS; threads++) {
        counting_allocator counter;
        eb_allocator mem;
        eb_team *team = start_team(threads, &counter, &mem);
        mirrored_record r;
        record_init(&r.base);
        atomic_init(&r.early, 0);
        for (size_t job = 0; job < 300; job++) {
            size_t chunks = job % 2 ? 2 * (1 + job % 32) : job % 17;
            /* Now and then a first half that takes long, or a helper that stalls. */
            r.first_half_ns = job % 50 == 7 ? 200000L : 0;
            r.base.helper_sleep_ns = job % 50 == 31 ? 2000000L : 0;
            for (size_t c = 0; c < MOST_CHUNKS; c++)
                atomic_store(&r.done[c], false);
            run_fn_and_check(team, &r.base, record_mirrored, &r, true, chunks, threads, job);
        }
        assert_int_equal(atomic_load(&r.early), 0);
        /* Past the most a mirrored job shares out, the caller runs it alone, in order. */
        order_record order = {0, 0, pthread_self(), 0};
        eb__team_run_mirrored(team, EB_TEAM_MAX_MIRRORED_CHUNKS + 3, record_order, &order);
        assert_int_equal(order.next, EB_TEAM_MAX_MIRRORED_CHUNKS + 3);
        assert_int_equal(order.out_of_order, 0);
        assert_int_equal(order.off_caller, 0);
        stop_team(team, &mem, &counter);
    }
}

/*
 * A helper that holds its first chunk (from the back) until every other chunk has run: the caller runs its own
 * half, takes the helper's while two or more are left, and the last one too once it has waited longer than a
 * chunk takes; a team that left that one to its owner would never finish the job.
 */
static void hold_until_the_rest_ran(void *opaque, size_t chunk, size_t chunks)
{
    job_record *r = opaque;
    if (!pthread_equal(pthread_self(), r->caller)) {
        for (;;) {
            size_t ran = 0;
            for (size_t c = 0; c < chunks; c++)
                ran += atomic_load(&r->runs[c]);
            if (ran + 1 == chunks)
                break;
            sched_yield();
        }
    }
    record_chunk(r, chunk, chunks);
}

static void the_caller_takes_what_a_stalled_helper_left(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem;
    eb_team *team = start_team(2, &counter, &mem);
    job_record r;
    record_init(&r);
    for (size_t job = 0; job < 40; job++) {
        atomic_store(&r.off_caller, 0);
        run_fn_and_check(team, &r, hold_until_the_rest_ran, &r, false, 2 + job % 15, 2, job);
        assert_true(atomic_load(&r.off_caller) <= 1);
    }
    stop_team(team, &mem, &counter);
}

static void no_team_runs_everything_on_the_caller(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    eb_team *team = (eb_team *)&counter;
    assert_int_equal(eb__team_start(0, &mem, &team), EB_OK);
    assert_null(team);
    team = (eb_team *)&counter;
    assert_int_equal(eb__team_start(1, &mem, &team), EB_OK);
    assert_null(team);
    /* A team whose memory cannot be had is EB_ERR_NOMEM, with no team. */
    team = (eb_team *)&counter;
    counting_allocator_arm(&counter, 0);
    assert_int_equal(eb__team_start(4, &mem, &team), EB_ERR_NOMEM);
    assert_null(team);
    assert_int_equal(counter.failures, 1);
    counting_allocator_arm(&counter, SIZE_MAX);
    assert_int_equal(counter.live_blocks, 0);
    for (size_t chunks = 0; chunks <= MOST_CHUNKS; chunks++) {
        order_record r = {0, 0, pthread_self(), 0};
        eb__team_run(NULL, chunks, record_order, &r);
        assert_int_equal(r.next, chunks);
        assert_int_equal(r.out_of_order, 0);
        assert_int_equal(r.off_caller, 0);
        order_record mirrored = {0, 0, pthread_self(), 0};
        eb__team_run_mirrored(NULL, chunks, record_order, &mirrored);
        assert_int_equal(mirrored.next, chunks);
        assert_int_equal(mirrored.out_of_order, 0);
        job_record counts;
        record_init(&counts);
        run_and_check(NULL, &counts, chunks, 1, chunks);
        assert_int_equal(atomic_load(&counts.off_caller), 0);
    }
    /* Stopping no team is a no-op. */
    eb__team_stop(NULL, &mem);
    assert_int_equal(counter.attempts, 0);
}

/* Teams started and stopped without a job, at every size and past the most threads: nothing left behind. */
static void teams_start_and_stop_without_jobs(void **state)
{
    (void)state;
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    for (size_t round = 0; round < 20; round++)
        for (size_t threads = 2; threads <= EB_TEAM_MAX_PARTS + 2; threads++) {
            eb_team *team = NULL;
            assert_int_equal(eb__team_start(threads, &mem, &team), EB_OK);
            assert_non_null(team);
            /* Stopped at once, or after the helpers had time to fall asleep. */
            if (round % 5 == 4)
                sleep_ns(1000000L);
            stop_team(team, &mem, &counter);
        }
    /* More threads than a team has: the most it has, every chunk still once. */
    eb_team *team = NULL;
    assert_int_equal(eb__team_start(1000, &mem, &team), EB_OK);
    assert_non_null(team);
    job_record r;
    record_init(&r);
    for (size_t job = 0; job < 100; job++)
        run_and_check(team, &r, chunks_of_job(job), 1000, job);
    stop_team(team, &mem, &counter);
}

/* eb__share_of: contiguous shares in order, covering everything, sizes at most one apart. */
static void shares_cover_everything_evenly(void **state)
{
    (void)state;
    for (size_t count = 0; count <= 200; count++)
        for (size_t parts = 1; parts <= 3 * EB_TEAM_MAX_PARTS; parts++) {
            size_t expected_first = 0, smallest = SIZE_MAX, largest = 0;
            for (size_t p = 0; p < parts; p++) {
                size_t first, last;
                eb__share_of(count, p, parts, &first, &last);
                assert_int_equal(first, expected_first);
                assert_true(last >= first);
                smallest = last - first < smallest ? last - first : smallest;
                largest = last - first > largest ? last - first : largest;
                expected_first = last;
            }
            assert_int_equal(expected_first, count);
            assert_true(largest - smallest <= 1);
        }
    /* The thread-count rule: as asked up to the most; automatic (0) by CPUs and work, never below one. */
    assert_int_equal(eb__threads_for(3, 0, 1000, 8), 3);
    assert_int_equal(eb__threads_for(20, 0, 1000, 8), 8);
    assert_int_equal(eb__threads_for(0, 0, 1000, 8), 1);
    assert_int_equal(eb__threads_for(0, 1999, 1000, 8), 1);
    size_t automatic = eb__threads_for(0, SIZE_MAX, 1, EB_TEAM_MAX_PARTS);
    assert_true(automatic >= 1 && automatic <= EB_TEAM_MAX_PARTS);
}

#ifdef __linux__
/*
 * Threads held to fewer CPUs than are online (taskset, a container's cpuset) count only those: held to one,
 * the automatic rule gives one thread, where two would take turns on that CPU.
 */
static void automatic_threads_follow_the_callers_cpu_affinity(void **state)
{
    (void)state;
    cpu_set_t allowed, one;
    assert_int_equal(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    int cpu = sched_getcpu();
    assert_true(cpu >= 0);
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    size_t held = eb__threads_for(0, SIZE_MAX, 1, EB_TEAM_MAX_PARTS);
    assert_int_equal(sched_setaffinity(0, sizeof allowed, &allowed), 0);
    assert_int_equal(held, 1);
    size_t usable = (size_t)CPU_COUNT(&allowed);
    assert_int_equal(eb__threads_for(0, SIZE_MAX, 1, EB_TEAM_MAX_PARTS),
                     usable < EB_TEAM_MAX_PARTS ? usable : EB_TEAM_MAX_PARTS);
}

/*
 * What a helper on its caller's CPU does: it leaves that CPU when its affinity allows another, and ends with
 * the affinity it had. Held to one CPU, or given no CPU (-1), it stays where it is.
 */
static void a_thread_moves_off_a_cpu_and_keeps_its_affinity(void **state)
{
    (void)state;
    cpu_set_t allowed, after, one;
    assert_int_equal(sched_getaffinity(0, sizeof allowed, &allowed), 0);
    size_t moved = 0, tries = 5;
    for (size_t t = 0; t < tries; t++) {
        int cpu = sched_getcpu();
        eb__move_off_cpu(cpu);
        /* Read at once: the system has no reason to move the thread back within microseconds. */
        if (sched_getcpu() != cpu)
            moved++;
        assert_int_equal(sched_getaffinity(0, sizeof after, &after), 0);
        assert_true(CPU_EQUAL(&after, &allowed));
    }
    if (CPU_COUNT(&allowed) >= 2)
        assert_true(moved + 1 >= tries);
    else
        assert_int_equal(moved, 0);

    int cpu = sched_getcpu();
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    eb__move_off_cpu(cpu);
    int stayed_on = sched_getcpu();
    assert_int_equal(sched_getaffinity(0, sizeof after, &after), 0);
    assert_int_equal(sched_setaffinity(0, sizeof allowed, &allowed), 0);
    assert_int_equal(stayed_on, cpu);
    assert_true(CPU_EQUAL(&after, &one));
    eb__move_off_cpu(-1);
    assert_int_equal(sched_getaffinity(0, sizeof after, &after), 0);
    assert_true(CPU_EQUAL(&after, &allowed));
}
#endif

/* ---- Adam over a team -------------------------------------------------------------------------------------- */

static void fill_trainable(eb_trainable *t, test_rng *rng)
{
    for (size_t i = 0; i < t->count; i++) {
        t->values[i] = (float)test_rng_uniform(rng, -1.0, 1.0);
        t->grad[i] = (float)test_rng_uniform(rng, -1.0, 1.0);
    }
}

/* Copies a's weights, gradient, moments and step count into b (same count). */
static void copy_trainable(const eb_trainable *a, eb_trainable *b)
{
    memcpy(b->values, a->values, a->count * sizeof(float));
    memcpy(b->grad, a->grad, a->count * sizeof(float));
    memcpy(b->first_moment, a->first_moment, a->count * sizeof(float));
    memcpy(b->second_moment, a->second_moment, a->count * sizeof(float));
    b->steps = a->steps;
}

static void assert_same_trainable(const eb_trainable *a, const eb_trainable *b)
{
    assert_int_equal(a->steps, b->steps);
    assert_memory_equal(a->values, b->values, a->count * sizeof(float));
    assert_memory_equal(a->first_moment, b->first_moment, a->count * sizeof(float));
    assert_memory_equal(a->second_moment, b->second_moment, a->count * sizeof(float));
}

/* One chunk of an Adam step: the weights of eb__share_of's share, as the contrastive training splits them. */
typedef struct adam_chunks {
    eb_trainable *weights;
    eb_adam_factors factors;
} adam_chunks;

static void adam_chunk(void *ctx, size_t chunk, size_t chunks)
{
    const adam_chunks *job = ctx;
    size_t first, last;
    eb__share_of(job->weights->count, chunk, chunks, &first, &last);
    eb__adam_update_range(job->weights, job->factors, first, last);
}

/*
 * Adam split over teams of 1 to 8 threads in 1 to 17 chunks, and by eb__adam_begin with update_range over
 * uneven ranges, gives eb__adam_step's bits, step after step, for counts that do and do not fill whole
 * 16-weight blocks (and fewer weights than chunks).
 */
static void adam_over_a_team_gives_the_serial_bits(void **state)
{
    (void)state;
    static const size_t counts[] = {1, 5, 16, 17, 250, 15051};
    counting_allocator counter;
    eb_allocator mem = counting_allocator_init(&counter);
    test_rng rng = test_rng_make(12);
    for (size_t threads = 1; threads <= EB_TEAM_MAX_PARTS; threads++) {
        eb_team *team = NULL;
        assert_int_equal(eb__team_start(threads, &mem, &team), EB_OK);
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            eb_trainable serial, split, ranged;
            assert_int_equal(eb__trainable_alloc(&serial, counts[k], &mem), EB_OK);
            assert_int_equal(eb__trainable_alloc(&split, counts[k], &mem), EB_OK);
            assert_int_equal(eb__trainable_alloc(&ranged, counts[k], &mem), EB_OK);
            fill_trainable(&serial, &rng);
            copy_trainable(&serial, &split);
            copy_trainable(&serial, &ranged);
            for (size_t step = 0; step < 6; step++) {
                size_t chunks = 1 + (threads * 3 + step * 5) % 17;
                eb__adam_step(&serial, 0.01f);
                adam_chunks job = {&split, eb__adam_begin(&split, 0.01f)};
                eb__team_run(team, chunks, adam_chunk, &job);
                assert_same_trainable(&serial, &split);
                /* Ranges of uneven lengths, applied out of order. */
                eb_adam_factors f = eb__adam_begin(&ranged, 0.01f);
                size_t cut1 = counts[k] / 3, cut2 = counts[k] - counts[k] / 7;
                eb__adam_update_range(&ranged, f, cut2, counts[k]);
                eb__adam_update_range(&ranged, f, 0, cut1);
                eb__adam_update_range(&ranged, f, cut1, cut1);
                eb__adam_update_range(&ranged, f, cut1, cut2);
                assert_same_trainable(&serial, &ranged);
                for (size_t i = 0; i < counts[k]; i++)
                    serial.grad[i] = split.grad[i] = ranged.grad[i] = (float)test_rng_uniform(&rng, -2.0, 2.0);
            }
            eb__trainable_release(&serial, &mem);
            eb__trainable_release(&split, &mem);
            eb__trainable_release(&ranged, &mem);
        }
        stop_team(team, &mem, &counter);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_chunk_runs_once_on_consecutive_jobs_of_one_size),
        cmocka_unit_test(every_chunk_runs_once_when_the_count_changes),
        cmocka_unit_test(more_chunks_than_a_team_shares_run_on_the_caller),
        cmocka_unit_test(every_chunk_runs_once_on_jobs_apart),
        cmocka_unit_test(a_stalled_helper_delays_nothing_twice),
        cmocka_unit_test(a_team_that_went_solo_gets_its_helper_back),
        cmocka_unit_test(the_line_probe_measures_and_leaves_jobs_whole),
        cmocka_unit_test(the_line_probe_returns_when_the_helper_stalls),
        cmocka_unit_test(mirrored_jobs_run_the_second_half_after_the_first),
        cmocka_unit_test(the_caller_takes_what_a_stalled_helper_left),
        cmocka_unit_test(no_team_runs_everything_on_the_caller),
        cmocka_unit_test(teams_start_and_stop_without_jobs),
        cmocka_unit_test(shares_cover_everything_evenly),
#ifdef __linux__
        cmocka_unit_test(automatic_threads_follow_the_callers_cpu_affinity),
        cmocka_unit_test(a_thread_moves_off_a_cpu_and_keeps_its_affinity),
#endif
        cmocka_unit_test(adam_over_a_team_gives_the_serial_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
