/*
 * A team of threads for the many short parallel phases of one fit: a
 * contrastive step at defaults runs two phases of about 0.1 ms each, 80 steps
 * a fit. Each phase (a job) is cut into chunks that the threads take, the
 * caller's from the front and the helpers from the back, so a helper that the
 * system has not scheduled (the other core busy) costs at most the chunk it
 * holds: the caller takes the rest and the fit runs at the speed of one
 * thread instead of waiting for the other. Helpers spin on the job word for a
 * while before they sleep, because waking a sleeping thread took longer than a
 * phase on the machine of docs/benchmarks.md; the team lives for one training
 * call, so a pause between calls costs no CPU.
 */
#ifdef __linux__
/* sched_getcpu and the CPU affinity calls, besides clock_gettime and sched_yield. */
#  define _GNU_SOURCE
#else
/* clock_gettime and sched_yield. */
#  define _POSIX_C_SOURCE 200809L
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#if defined(__x86_64__) || defined(__i386__)
#  include <immintrin.h>
#  define EB_SPIN_PAUSE() _mm_pause()
#else
#  define EB_SPIN_PAUSE() ((void)0)
#endif

/* A helper spins this long for the next job before it sleeps: longer than the serial work between two phases. */
static const double HELPER_SPIN_SECONDS = 300e-6;
/* A chunk a helper's end still has after this long is the caller's to run: several times a chunk's time. */
static const double LEFT_CHUNK_SECONDS = 30e-6;
/* The caller spins this long for a helper's last chunk before it yields its core to the helper. */
static const double CALLER_SPIN_SECONDS = 50e-6;
/*
 * A chunk takes about 12 us at a contrastive fit's defaults; waiting this long for one means the system took
 * the helper's core away (another process), and would again soon: the caller's thread goes on alone, at one
 * thread's speed, instead of waiting a scheduler's time slice each time.
 */
static const double SOLO_AFTER_SECONDS = 1e-3;
/*
 * Helpers that together took less than a quarter of a window of this many jobs' chunks (two threads that run
 * at once take about half each) share a core with the caller or with another process: spinning there only takes
 * time from whoever waits for that core, so the caller's thread goes on alone. Windows start once a helper has
 * taken its first chunk: a core that was idle can take a millisecond or more to wake (an idle vCPU of a virtual
 * machine), and judging the helpers before that gave up on a team that then ran.
 */
enum { REVIEW_JOBS = 16 };
/*
 * Alone, the caller tries its helpers again after this long, and twice as long after each failed try: the
 * other core is often busy only for a while (PyTorch's OpenMP threads spin for some milliseconds after their
 * last parallel region: 2026-12-04, contrastive fits started right after a 2-thread PyTorch fit took 19.6 ms
 * when they stayed alone for the rest of the call, 16.9 ms when they tried again; medians of 5). A failed try
 * costs a window's jobs, or a millisecond when no helper comes.
 */
static const double FIRST_SOLO_SECONDS = 2e-3;

struct eb_team {
    pthread_t threads[EB_TEAM_MAX_PARTS - 1];
    size_t started;
    pthread_mutex_t lock;
    pthread_cond_t job_posted;
    /* The job's number (high 32 bits), the next chunk to take from the front (the next 16) and one past the next
       from the back (low 16) in one word: taking a chunk and checking which job it belongs to are one atomic
       step, so a helper that read an older job's word can never take a chunk of a newer one or one too many. */
    atomic_uint_least64_t job_and_chunk;
    atomic_size_t chunks;      /* the job's number of chunks */
    atomic_bool mirrored;      /* the job's second half waits for its first (eb__team_run_mirrored) */
    atomic_uint_least64_t first_half_done; /* mirrored: bit c once chunk c of the first half is done */
    atomic_size_t chunks_done;
    atomic_size_t helper_chunks; /* chunks the helpers have run, over all jobs */
    _Atomic(eb_team_fn) fn;
    _Atomic(void *) ctx;
    atomic_bool stopping;
    size_t sleeping_helpers; /* under lock */
    /* The caller's own: */
    uint32_t job;                 /* jobs posted */
    bool window_open;             /* a helper has taken a chunk: the review windows have begun */
    size_t window_jobs;           /* jobs of the current review window */
    size_t window_chunks;         /* chunks posted in it */
    size_t window_helper_chunks;  /* helper_chunks when it began, or when the team was last tried again */
    bool tried_again;             /* the team was tried again after going solo, at tried_at */
    double tried_at;
    bool solo;                    /* helpers are given no work until solo_until */
    double solo_until, solo_seconds;
    atomic_int caller_cpu;        /* the CPU the caller posted the current job from, -1 if unknown */
};

static double seconds_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

/*
 * Takes and runs chunks of job `job` until none is left or the team runs another job; returns how many it ran.
 * The caller takes chunks from the front, helpers from the back, each end owning half of them: when every
 * thread keeps pace each runs the same chunks job after job, so the weights and Adam moments of its rows stay
 * in its core's cache. A thread that is done with its own half takes the other's only while at least two are
 * left, leaving the last to its owner, unless `greedy`: a chunk run by the other thread costs the lines it
 * touches twice, now and in the next job (2026-12-04, contrastive defaults on two threads: Adam took 5.6 ms of
 * CPU per fit when the faster thread took whatever was left, 3.2 ms when each kept to its half). In a mirrored
 * job a thread waits for a second-half chunk's turn before it takes the chunk, not after: a helper the system
 * stops while it waits then holds nothing, and the caller can go on without it.
 */
static size_t run_chunks(eb_team *team, uint32_t job, bool from_back, bool greedy)
{
    size_t ran = 0;
    uint_least64_t word = atomic_load_explicit(&team->job_and_chunk, memory_order_acquire);
    /* Read after the job's word: the caller stores them before it posts the job. */
    eb_team_fn fn = atomic_load_explicit(&team->fn, memory_order_relaxed);
    void *ctx = atomic_load_explicit(&team->ctx, memory_order_relaxed);
    for (;;) {
        size_t front = (size_t)((word >> 16) & 0xFFFFu), back = (size_t)(word & 0xFFFFu);
        if ((uint32_t)(word >> 32) != job || front >= back)
            return ran;
        /* A stale count (a newer job's) only misjudges a chunk the exchange below then fails to take. */
        size_t chunks = atomic_load_explicit(&team->chunks, memory_order_relaxed), half = chunks / 2;
        size_t chunk = from_back ? back - 1 : front, waits_for = chunks - 1 - chunk;
        bool own = from_back ? back > half : front < half;
        if (!own && !greedy && back - front < 2)
            return ran;
        /* waits_for < 64 holds for every mirrored job; it keeps the shift defined on counts read mid-update. */
        if (waits_for < half && waits_for < 64 && atomic_load_explicit(&team->mirrored, memory_order_relaxed) &&
            !(atomic_load_explicit(&team->first_half_done, memory_order_acquire) >> waits_for & 1u)) {
            EB_SPIN_PAUSE();
            word = atomic_load_explicit(&team->job_and_chunk, memory_order_acquire);
            continue;
        }
        uint_least64_t taken = from_back ? word - 1 : word + ((uint_least64_t)1 << 16);
        if (!atomic_compare_exchange_weak_explicit(&team->job_and_chunk, &word, taken, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        /* While this chunk is held the caller cannot post another job: the count is this job's. */
        chunks = atomic_load_explicit(&team->chunks, memory_order_relaxed);
        fn(ctx, chunk, chunks);
        if (chunk < chunks / 2 && chunk < 64 && atomic_load_explicit(&team->mirrored, memory_order_relaxed))
            atomic_fetch_or_explicit(&team->first_half_done, (uint_least64_t)1 << chunk, memory_order_release);
        ran++;
        atomic_fetch_add_explicit(&team->chunks_done, 1, memory_order_release);
        word = atomic_load_explicit(&team->job_and_chunk, memory_order_acquire);
    }
}

static uint32_t job_of(const eb_team *team)
{
    return (uint32_t)(atomic_load_explicit(&team->job_and_chunk, memory_order_acquire) >> 32);
}

/* The CPU the calling thread runs on, or -1 where the system does not say. */
static int current_cpu(void)
{
#ifdef __linux__
    return sched_getcpu();
#else
    return -1;
#endif
}

/*
 * Linux may start a helper, or wake one, on the CPU of the thread that started or woke it, and leave it there
 * for milliseconds while another CPU idles: the helper then spins in the caller's time slices instead of
 * working beside it (2026-12-04, 2 vCPUs, the first contrastive fit after 0.2 s idle: 13 of 20 fits had the
 * helper on the caller's CPU for 1-18 ms, and took 20-35 ms against 18 ms on one thread). Leaving that CPU out
 * of the helper's affinity moves it now; its own affinity comes back at once, and the system has no reason to
 * move it back to a busy CPU.
 */
void eb__move_off_cpu(int cpu)
{
#ifdef __linux__
    cpu_set_t allowed, others;
    if (cpu < 0 || cpu >= CPU_SETSIZE || pthread_getaffinity_np(pthread_self(), sizeof allowed, &allowed) != 0)
        return;
    others = allowed;
    CPU_CLR(cpu, &others);
    if (CPU_COUNT(&others) > 0 && pthread_setaffinity_np(pthread_self(), sizeof others, &others) == 0)
        pthread_setaffinity_np(pthread_self(), sizeof allowed, &allowed);
#else
    (void)cpu;
#endif
}

static void *helper_main(void *opaque)
{
    eb_team *team = opaque;
    uint32_t seen = 0;
    for (;;) {
        double spin_until = seconds_now() + HELPER_SPIN_SECONDS;
        uint32_t job;
        while ((job = job_of(team)) == seen && !atomic_load_explicit(&team->stopping, memory_order_acquire)) {
            for (int i = 0; i < 64; i++)
                EB_SPIN_PAUSE();
            if (seconds_now() > spin_until) {
                pthread_mutex_lock(&team->lock);
                team->sleeping_helpers++;
                while ((job = job_of(team)) == seen && !atomic_load_explicit(&team->stopping, memory_order_acquire))
                    pthread_cond_wait(&team->job_posted, &team->lock);
                team->sleeping_helpers--;
                pthread_mutex_unlock(&team->lock);
                break;
            }
        }
        if (atomic_load_explicit(&team->stopping, memory_order_acquire))
            return NULL;
        seen = job;
        int caller_cpu = atomic_load_explicit(&team->caller_cpu, memory_order_relaxed);
        if (caller_cpu >= 0 && caller_cpu == current_cpu())
            eb__move_off_cpu(caller_cpu);
        size_t ran = run_chunks(team, job, true, false);
        atomic_fetch_add_explicit(&team->helper_chunks, ran, memory_order_relaxed);
    }
}

/*
 * The CPUs this process may run on: held to fewer than are online (taskset, a container's cpuset), threads
 * beyond them would take turns on the same CPUs (2026-12-04, a contrastive fit held to one of 2 CPUs: 24.0 ms
 * on two threads, 18.3 ms on one).
 */
static size_t usable_cpus(void)
{
#ifdef __linux__
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) == 0 && CPU_COUNT(&allowed) >= 1)
        return (size_t)CPU_COUNT(&allowed);
#endif
    long count = sysconf(_SC_NPROCESSORS_ONLN);
    return count >= 1 ? (size_t)count : 1;
}

size_t eb__threads_for(size_t requested, size_t total_work, size_t min_work_per_thread, size_t max_threads)
{
    size_t threads = requested;
    if (requested == 0) {
        threads = usable_cpus();
        size_t by_work = total_work / min_work_per_thread;
        if (by_work < threads)
            threads = by_work;
    }
    if (threads > max_threads)
        threads = max_threads;
    return threads >= 1 ? threads : 1;
}

void eb__share_of(size_t count, size_t part, size_t parts, size_t *first, size_t *last)
{
    *first = count * part / parts;
    *last = count * (part + 1) / parts;
}

eb_status eb__team_start(size_t threads, const eb_allocator *mem, eb_team **out)
{
    *out = NULL;
    if (threads < 2)
        return EB_OK;
    if (threads > EB_TEAM_MAX_PARTS)
        threads = EB_TEAM_MAX_PARTS;
    eb_team *team = eb__calloc(mem, 1, sizeof *team);
    if (team == NULL)
        return EB_ERR_NOMEM;
    atomic_init(&team->job_and_chunk, 0);
    atomic_init(&team->chunks, 0);
    atomic_init(&team->mirrored, false);
    atomic_init(&team->first_half_done, 0);
    atomic_init(&team->chunks_done, 0);
    atomic_init(&team->helper_chunks, 0);
    atomic_init(&team->fn, NULL);
    atomic_init(&team->ctx, NULL);
    atomic_init(&team->stopping, false);
    atomic_init(&team->caller_cpu, -1);
    team->solo_seconds = FIRST_SOLO_SECONDS;
    /* A team that cannot be set up is no team: the caller's thread alone does the work. */
    if (pthread_mutex_init(&team->lock, NULL) != 0) {
        eb__free(mem, team);
        return EB_OK;
    }
    if (pthread_cond_init(&team->job_posted, NULL) != 0) {
        pthread_mutex_destroy(&team->lock);
        eb__free(mem, team);
        return EB_OK;
    }
    for (size_t t = 0; t + 1 < threads; t++) {
        if (pthread_create(&team->threads[t], NULL, helper_main, team) != 0)
            break;
        team->started++;
    }
    if (team->started == 0) {
        eb__team_stop(team, mem);
        return EB_OK;
    }
    *out = team;
    return EB_OK;
}

static void go_solo(eb_team *team, double now)
{
    team->solo = true;
    team->solo_until = now + team->solo_seconds;
    team->solo_seconds *= 2;
}

/* Helpers get work again; the next window begins with the job after one of them takes a chunk. */
static void try_again(eb_team *team, double now)
{
    team->solo = false;
    team->window_open = false;
    team->window_helper_chunks = atomic_load_explicit(&team->helper_chunks, memory_order_relaxed);
    team->tried_again = true;
    team->tried_at = now;
}

/* After a job of `chunks` chunks: counts it into the review window and goes solo on a poor window. */
static void review(eb_team *team, size_t chunks)
{
    if (team->solo)
        return;
    size_t helper_chunks = atomic_load_explicit(&team->helper_chunks, memory_order_relaxed);
    if (!team->window_open) {
        if (helper_chunks > team->window_helper_chunks) {
            team->window_open = true;
            team->window_jobs = team->window_chunks = 0;
            team->window_helper_chunks = helper_chunks;
        } else if (team->tried_again) {
            /* A helper that has not come this long after it was woken again finds its core still taken. */
            double now = seconds_now();
            if (now - team->tried_at > SOLO_AFTER_SECONDS)
                go_solo(team, now);
        }
        return;
    }
    team->window_jobs++;
    team->window_chunks += chunks;
    if (team->window_jobs < REVIEW_JOBS)
        return;
    if (4 * (helper_chunks - team->window_helper_chunks) < team->window_chunks)
        go_solo(team, seconds_now());
    team->window_jobs = team->window_chunks = 0;
    team->window_helper_chunks = helper_chunks;
}

static void run_job(eb_team *team, size_t chunks, eb_team_fn fn, void *ctx, bool mirrored)
{
    /* In order, each chunk of a mirrored job's second half comes after the one it waits for. */
    size_t most_chunks = mirrored ? EB_TEAM_MAX_MIRRORED_CHUNKS : EB_TEAM_MAX_CHUNKS;
    if (team != NULL && team->solo) {
        double now = seconds_now();
        if (now >= team->solo_until)
            try_again(team, now);
    }
    if (team == NULL || team->solo || chunks < 2 || chunks > most_chunks) {
        for (size_t c = 0; c < chunks; c++)
            fn(ctx, c, chunks);
        return;
    }
    atomic_store_explicit(&team->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&team->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&team->chunks_done, 0, memory_order_relaxed);
    atomic_store_explicit(&team->chunks, chunks, memory_order_relaxed);
    atomic_store_explicit(&team->mirrored, mirrored, memory_order_relaxed);
    atomic_store_explicit(&team->first_half_done, 0, memory_order_relaxed);
    atomic_store_explicit(&team->caller_cpu, current_cpu(), memory_order_relaxed);
    uint32_t job = ++team->job;
    pthread_mutex_lock(&team->lock);
    atomic_store_explicit(&team->job_and_chunk, (uint_least64_t)job << 32 | (uint_least64_t)chunks,
                          memory_order_release);
    if (team->sleeping_helpers > 0)
        pthread_cond_broadcast(&team->job_posted);
    pthread_mutex_unlock(&team->lock);
    run_chunks(team, job, false, false);
    /*
     * A helper that has taken none of the chunks by the time the caller is done with its own has not started
     * on the job (its core is busy, or it is waking): leaving it the last chunk would only add the wait below
     * to the job (2026-12-04, fits right after a 2-thread PyTorch fit: the helper took its first chunk 2-6 ms
     * into the fit, and the caller waited 30 us in 12-36 jobs before it).
     */
    if ((atomic_load_explicit(&team->job_and_chunk, memory_order_acquire) & 0xFFFFu) == chunks)
        run_chunks(team, job, false, true);
    /* Wait for the chunks a helper holds, and take those it left for longer than a chunk takes. */
    double waited_from = seconds_now();
    while (atomic_load_explicit(&team->chunks_done, memory_order_acquire) != chunks) {
        EB_SPIN_PAUSE();
        double now = seconds_now();
        if (now - waited_from > LEFT_CHUNK_SECONDS)
            run_chunks(team, job, false, true);
        if (now - waited_from > CALLER_SPIN_SECONDS)
            sched_yield();
        if (now - waited_from > SOLO_AFTER_SECONDS && !team->solo)
            go_solo(team, now);
    }
    review(team, chunks);
}

void eb__team_run(eb_team *team, size_t chunks, eb_team_fn fn, void *ctx)
{
    run_job(team, chunks, fn, ctx, false);
}

void eb__team_run_mirrored(eb_team *team, size_t chunks, eb_team_fn fn, void *ctx)
{
    run_job(team, chunks, fn, ctx, true);
}

/*
 * The line time probe (eb__team_line_seconds): the caller's chunk and a helper's bounce a counter on its own
 * line, each waiting for the other's value. PROBE_ABANDONED tells a helper that comes late, or that the caller
 * stopped waiting for, to leave at once.
 */
enum { PROBE_BOUNCES = 16 };
static const uint32_t PROBE_ABANDONED = UINT32_MAX;
/*
 * How long the caller waits for a helper to answer, and then for the bounces, before it gives up. A helper
 * started just before answered after 0.1-0.2 ms (2026-12-04, 2 vCPUs, after 1-300 ms idle); 16 bounces across
 * two dies take about 6 us.
 */
static const double PROBE_ANSWER_SECONDS = 1e-3;
static const double PROBE_BOUNCES_SECONDS = 200e-6;

typedef struct line_probe {
    _Alignas(64) atomic_uint_least32_t ball;
    double one_way_seconds;
} line_probe;

static void probe_part(void *opaque, size_t chunk, size_t chunks)
{
    line_probe *probe = opaque;
    (void)chunks;
    if (chunk == 1) {
        uint_least32_t idle = 0;
        if (!atomic_compare_exchange_strong_explicit(&probe->ball, &idle, 1, memory_order_acq_rel,
                                                     memory_order_acquire))
            return;
        for (uint32_t i = 1; i <= PROBE_BOUNCES; i++) {
            uint_least32_t seen;
            while ((seen = atomic_load_explicit(&probe->ball, memory_order_acquire)) != 2 * i &&
                   seen != PROBE_ABANDONED)
                EB_SPIN_PAUSE();
            /* An exchange, not a store: a caller that gave up in between must not see its mark overwritten. */
            if (seen == PROBE_ABANDONED ||
                !atomic_compare_exchange_strong_explicit(&probe->ball, &seen, 2 * i + 1, memory_order_acq_rel,
                                                         memory_order_acquire))
                return;
        }
        return;
    }
    const double start = seconds_now();
    uint_least32_t idle = 0;
    while (atomic_load_explicit(&probe->ball, memory_order_acquire) != 1) {
        EB_SPIN_PAUSE();
        /* A helper just started may sit on this thread's CPU until it runs once (see eb__move_off_cpu). */
        if (seconds_now() - start > CALLER_SPIN_SECONDS)
            sched_yield();
        /* Nobody came: close the probe unless a helper answers in the meantime. */
        if (seconds_now() - start > PROBE_ANSWER_SECONDS &&
            atomic_compare_exchange_strong_explicit(&probe->ball, &idle, PROBE_ABANDONED, memory_order_acq_rel,
                                                    memory_order_acquire))
            return;
        idle = 0;
    }
    const double bounced_from = seconds_now();
    for (uint32_t i = 1; i <= PROBE_BOUNCES; i++) {
        atomic_store_explicit(&probe->ball, 2 * i, memory_order_release);
        while (atomic_load_explicit(&probe->ball, memory_order_acquire) != 2 * i + 1) {
            EB_SPIN_PAUSE();
            uint_least32_t sent = 2 * i;
            /* Giving up takes the ball back unless the helper's answer came first, which then counts. */
            if (seconds_now() - bounced_from > PROBE_BOUNCES_SECONDS &&
                atomic_compare_exchange_strong_explicit(&probe->ball, &sent, PROBE_ABANDONED, memory_order_acq_rel,
                                                        memory_order_acquire))
                return;
        }
    }
    probe->one_way_seconds = (seconds_now() - bounced_from) / (2.0 * PROBE_BOUNCES);
}

double eb__team_line_seconds(eb_team *team)
{
    if (team == NULL)
        return 0.0;
    line_probe probe;
    atomic_init(&probe.ball, 0);
    probe.one_way_seconds = 0.0;
    run_job(team, 2, probe_part, &probe, false);
    return probe.one_way_seconds;
}

size_t eb__team_threads(const eb_team *team)
{
    return team == NULL ? 1 : team->started + 1;
}

void eb__team_stop(eb_team *team, const eb_allocator *mem)
{
    if (team == NULL)
        return;
    pthread_mutex_lock(&team->lock);
    atomic_store_explicit(&team->stopping, true, memory_order_release);
    pthread_cond_broadcast(&team->job_posted);
    pthread_mutex_unlock(&team->lock);
    for (size_t t = 0; t < team->started; t++)
        pthread_join(team->threads[t], NULL);
    pthread_cond_destroy(&team->job_posted);
    pthread_mutex_destroy(&team->lock);
    eb__free(mem, team);
}
