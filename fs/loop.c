/*
 * loop.c -- the daemon's request loop: worker threads serving /dev/fuse, where the next request
 * of a serial workload goes to the worker that has just served one.
 *
 * Why not libfuse's loop: the kernel wakes the threads waiting on /dev/fuse first come, first
 * served, so under fuse_session_loop_mt every request of a serial workload (one process
 * creating, writing and fsyncing file after file) goes to the worker that has slept longest:
 * cold, and usually on another CPU that must be woken first. On a 2-vCPU machine a
 * create+write+fsync cost 240 us that way and 160 us here (docs/performance-fs.md).
 *
 * Reader roles: a worker reads from the kernel only while it holds a reader role. A worker that
 * has read a request keeps its role while it serves it, so when the caller's next request
 * comes, the same warm thread reads it; the other workers park in user space, the most recently
 * active on top. A role is handed on (to the top parked worker, else to a new one while fewer
 * than max_threads exist) as soon as a second thread can help:
 *   - more requests are queued behind the one just read: callers are running in parallel, and
 *     for the next LOOP_POLL_WINDOW requests ("contended") a worker that finishes takes a role
 *     of its own instead of parking, so that as many threads read as callers wait, or
 *   - a worker has served the same request for LOOP_STUCK_TICKS watchdog ticks (LOOP_TICK_US)
 *     while other requests queue: a cold read or a write stall keeps other callers waiting no
 *     longer than that, while a lone caller's big reads and writes stay on one thread.
 * Looking for queued requests costs a poll(2), a few microseconds on a 2-vCPU machine, so a
 * reader looks only while contended or when the request comes from another thread (the pid in
 * its header) than the one before: a serial caller, always the same thread, pays nothing.
 * (Looking while a request is being served would not do: the caller, already answered, may
 * have queued its next request before the worker has left the handler.)
 *
 * Spinning: a worker that has answered a request polls /dev/fuse for up to spin_us before it
 * sleeps in the kernel, while its previous request came within spin_us of the answer before
 * (the caller is chatty: stat after stat, create-write-close after create-write-close). Waking a
 * sleeping thread on another CPU costs a wake-up IPI, and on a virtual machine whose idle vCPU
 * halts, 10-30 us more; a thread already running takes the request at once. A gap longer than
 * spin_us (a caller that thinks between requests, an idle mount) ends spinning after one spin,
 * so an idle daemon burns no CPU; a short gap seen by the sleeping read starts it again. On one
 * CPU it never spins (the spinner would only delay the caller), nor while other workers read
 * (parallel callers: 4 fsbench processes created files 15-25% slower with spinning), nor within
 * LOOP_FSYNC_QUIET_US of an answered fsync: a serial create+write+fsync caller measured 10-40%
 * slower with the daemon spinning beside its disk flushes (docs/performance.md), and its flush,
 * not a round trip, is what it waits for.
 *
 * Invariants (l->mu): holders counts the workers holding a role (in the kernel or serving what
 * they read); a worker parks only while holders > 0, so some worker will read and parked ones
 * are woken when needed; only a holder calls fuse_session_receive_buf (no lock held there).
 *
 * Shutdown: the session ends by unmount (the read fails with ENODEV and libfuse marks the
 * session exited) or by SIGTERM/SIGINT/SIGHUP, which are blocked in every thread but the
 * supervisor (the caller of kvfs_loop_run: it serves nothing, and its sem_wait is what the
 * signal interrupts). The supervisor then wakes the parked workers, interrupts the reads of
 * the workers in the kernel with LOOP_WAKE_SIGNAL (its handler does nothing and does not
 * restart the read, which fails with EINTR; it is sent again until every worker has left the
 * kernel, in case one arrived just before its read) and joins every thread. Every worker
 * returns from its own function: none is cancelled, so nothing is unwound past its frames.
 */
#include "loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <linux/fuse.h>
#include <poll.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The watchdog's period: the longest one request holds the others up (see file comment). */
#define LOOP_TICK_US 1000u
/* Requests after the last queue seen during which the loop counts as contended. */
#define LOOP_POLL_WINDOW 64u
/* Ticks one request may be served while others queue before another worker reads: long
 * enough for a 1 MiB read or write (1-3 ms; handing their readahead or their caller's next
 * request to another thread made sequential I/O 10-20% slower), short enough that a cold read
 * or a write stall keeps nobody waiting for long. */
#define LOOP_STUCK_TICKS 5u
/* Workers when -o max_threads is not given (libfuse's own default). */
#define LOOP_DEFAULT_THREADS 10u
/* Spin before sleeping (file comment) when -o spin is not given, in microseconds: a few
 * request round trips of a chatty caller, far below what waking another CPU costs a VM. */
#define LOOP_DEFAULT_SPIN_US 50u
#define LOOP_MAX_SPIN_US 10000u
/* No spinning this long after an fsync (file comment). */
#define LOOP_FSYNC_QUIET_US 200000u
#define LOOP_MAX_THREADS 100000u
/* Interrupts a worker's read at shutdown (file comment). Sent only with pthread_kill to the
 * loop's own workers, so no other thread of the process ever sees it. */
#define LOOP_WAKE_SIGNAL SIGUSR2
/* How often the supervisor sends it again while a worker is still in the kernel. */
#define LOOP_WAKE_RETRY_US 1000u

typedef struct loop_worker {
    struct kvfs_loop *loop;
    pthread_t tid;
    pthread_cond_t wake;  /* parked here until given a role or the loop ends */
    struct fuse_buf buf;  /* request buffer, allocated by libfuse on first use */
    int holding;          /* (mu) holds a reader role */
    int parked;           /* (mu) in loop->parked */
    int in_kernel;        /* (mu) spinning or inside fuse_session_receive_buf */
    int serving;          /* (mu) serving a request */
    uint64_t served;      /* (mu) requests read by this worker */
    uint64_t seen;        /* (mu) served at the watchdog's previous tick */
    unsigned same_ticks;  /* (mu) ticks it has been serving the same request */
    uint64_t answered_us; /* when it last finished serving (0: never) */
    int spin;             /* spin before the next sleeping read: the last gap was short */
} loop_worker;

typedef struct kvfs_loop {
    struct fuse_session *se;
    int fd;
    pthread_mutex_t mu;
    size_t holders;       /* (mu) workers holding a reader role */
    loop_worker **parked; /* (mu) stack: the top was active most recently */
    size_t nparked;       /* (mu) */
    loop_worker *workers; /* (mu) max_workers slots, nworkers started */
    size_t nworkers, max_workers;
    unsigned spin_us;          /* longest spin before a sleeping read; 0: never spin */
    _Atomic uint64_t fsync_us; /* when an FSYNC was last answered (0: never) */
    int ending;                /* (mu) no worker may start another request */
    int error;                 /* (mu) a failed read (negative errno) ended the session */
    unsigned contended;        /* (mu) requests left in the contended window */
    uint64_t requests;         /* (mu) requests read */
    uint32_t last_caller;      /* (mu) the thread that sent the last request we looked at */
    int watching;              /* (mu) the watchdog ticks; 0: it sleeps until a request comes */
    pthread_cond_t tick;       /* the watchdog sleeps here (CLOCK_MONOTONIC) */
    pthread_t watchdog;
    int watchdog_started;
    sem_t ended;
    struct sigaction wake_before; /* LOOP_WAKE_SIGNAL's handler before the loop's */
} kvfs_loop;

static void *loop_worker_main(void *arg);

/* The termination signals libfuse's handlers act on (fuse_set_signal_handlers). */
static void loop_termination_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
}

void kvfs_block_signals(void)
{
    sigset_t set;
    loop_termination_signals(&set);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
}

void kvfs_unblock_signals(void)
{
    sigset_t set;
    loop_termination_signals(&set);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* Starts one more worker holding a reader role. 0, or -1 when max_threads exist or no thread
 * can be created. (mu) */
static int loop_spawn(kvfs_loop *l)
{
    if (l->nworkers == l->max_workers)
        return -1;
    loop_worker *w = &l->workers[l->nworkers];
    memset(w, 0, sizeof(*w));
    w->loop = l;
    w->holding = 1;
    if (pthread_cond_init(&w->wake, NULL) != 0)
        return -1;
    int rc = pthread_create(&w->tid, NULL, loop_worker_main, w);
    if (rc != 0) {
        pthread_cond_destroy(&w->wake);
        return -1;
    }
    l->nworkers++;
    l->holders++;
    return 0;
}

/* Gives a reader role to another worker: the top parked one, else a new one. A no-op when every
 * worker is busy and no more may start: the first to finish will read. (mu) */
static void loop_add_reader(kvfs_loop *l)
{
    if (l->nparked > 0) {
        loop_worker *next = l->parked[--l->nparked];
        next->parked = 0;
        next->holding = 1;
        l->holders++;
        pthread_cond_signal(&next->wake);
    } else if (!l->ending) {
        loop_spawn(l);
    }
}

/* The serving worker w gives up its reader role to another worker. (mu) */
static void loop_pass_reader(kvfs_loop *l, loop_worker *w)
{
    if (!w->holding)
        return;
    w->holding = 0;
    l->holders--;
    loop_add_reader(l);
}

/* Requests were seen queued behind the one w serves. (mu) */
static void loop_queue_seen(kvfs_loop *l, loop_worker *w)
{
    l->contended = LOOP_POLL_WINDOW;
    loop_pass_reader(l, w);
}

/* Takes w, woken without a role, off the parked stack. (mu) */
static void loop_unpark(kvfs_loop *l, loop_worker *w)
{
    size_t i = 0;
    while (l->parked[i] != w)
        i++;
    memmove(&l->parked[i], &l->parked[i + 1], (l->nparked - i - 1) * sizeof(*l->parked));
    l->nparked--;
    w->parked = 0;
}

/* Waits until w holds a reader role. Returns 0, or -1 once the loop is ending. (mu) */
static int loop_take_reader(kvfs_loop *l, loop_worker *w)
{
    while (!l->ending && !w->holding) {
        if (l->holders == 0 || l->contended > 0) {
            if (w->parked)
                loop_unpark(l, w);
            w->holding = 1;
            l->holders++;
            break;
        }
        if (!w->parked) {
            l->parked[l->nparked++] = w;
            w->parked = 1;
        }
        pthread_cond_wait(&w->wake, &l->mu);
    }
    return l->ending ? -1 : 0;
}

/* Whether more requests wait in the kernel. */
static int loop_queued(const kvfs_loop *l)
{
    struct pollfd p = {.fd = l->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0 && (p.revents & POLLIN);
}

/* Ends the session from a worker: a failed read, or libfuse saw the unmount. (mu) */
static void loop_end(kvfs_loop *l, int res)
{
    if (res < 0 && !l->error)
        l->error = res;
    if (!l->ending) {
        l->ending = 1;
        sem_post(&l->ended);
    }
}

/* The header of the request read into buf, or NULL when it is not in memory. */
static const struct fuse_in_header *loop_header(const struct fuse_buf *buf)
{
    if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(struct fuse_in_header))
        return NULL;
    return buf->mem;
}

/* The thread that sent the request in buf and waits for its answer, or 0 when nobody waits:
 * requests the kernel sends on its own (close's RELEASE, FORGET, INTERRUPT), behind which a
 * serial caller's next request may already queue. */
static uint32_t loop_waiting_caller(const struct fuse_buf *buf)
{
    const struct fuse_in_header *in = loop_header(buf);
    if (!in)
        return 0;
    switch (in->opcode) {
    case FUSE_RELEASE:
    case FUSE_RELEASEDIR:
    case FUSE_FORGET:
    case FUSE_BATCH_FORGET:
    case FUSE_INTERRUPT:
        return 0;
    }
    return in->pid;
}

/* Bookkeeping once w has read a request; looks for a queue behind it while contended or when
 * the caller changed (file comment). (mu) */
static void loop_start_request(kvfs_loop *l, loop_worker *w)
{
    w->serving = 1;
    w->served++;
    l->requests++;
    if (!l->watching) {
        l->watching = 1;
        pthread_cond_signal(&l->tick);
    }
    uint32_t caller = loop_waiting_caller(&w->buf);
    if (!caller)
        return;
    int changed = caller != l->last_caller;
    l->last_caller = caller;
    if (!changed && l->contended == 0)
        return;
    if (l->contended > 0)
        l->contended--;
    pthread_mutex_unlock(&l->mu);
    int queued = loop_queued(l);
    pthread_mutex_lock(&l->mu);
    if (queued)
        loop_queue_seen(l, w);
}

static uint64_t loop_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Before w sleeps in the kernel: while w->spin and no fsync came lately, polls until a request
 * is queued or spin_us have passed since w's last answer (file comment). */
static void loop_spin(const kvfs_loop *l, const loop_worker *w)
{
    if (!w->spin)
        return;
    uint64_t synced = atomic_load_explicit(&l->fsync_us, memory_order_relaxed);
    if (synced && w->answered_us < synced + LOOP_FSYNC_QUIET_US)
        return;
    uint64_t until = w->answered_us + l->spin_us;
    while (!loop_queued(l) && loop_now_us() < until)
        ;
}

/* After w has read a request: spin next time only if it came soon after w's last answer. */
static void loop_note_gap(const kvfs_loop *l, loop_worker *w)
{
    w->spin = l->spin_us && w->answered_us && loop_now_us() - w->answered_us <= l->spin_us;
}

static void *loop_worker_main(void *arg)
{
    loop_worker *w = arg;
    kvfs_loop *l = w->loop;
    pthread_mutex_lock(&l->mu);
    while (loop_take_reader(l, w) == 0) {
        w->in_kernel = 1;
        /* parallel callers keep every CPU busy: a spinner would only take one from them */
        int alone = l->holders == 1 && l->contended == 0;
        pthread_mutex_unlock(&l->mu);
        if (alone)
            loop_spin(l, w);
        int res = fuse_session_receive_buf(l->se, &w->buf);
        if (res > 0)
            loop_note_gap(l, w);
        pthread_mutex_lock(&l->mu);
        w->in_kernel = 0;
        if (res == -EINTR)
            continue;
        if (res <= 0 || fuse_session_exited(l->se)) {
            loop_end(l, res);
            break;
        }
        loop_start_request(l, w);
        pthread_mutex_unlock(&l->mu);
        const struct fuse_in_header *in = loop_header(&w->buf);
        int fsync = in && (in->opcode == FUSE_FSYNC || in->opcode == FUSE_FSYNCDIR);
        fuse_session_process_buf(l->se, &w->buf);
        w->answered_us = loop_now_us();
        if (fsync)
            atomic_store_explicit(&l->fsync_us, w->answered_us, memory_order_relaxed);
        pthread_mutex_lock(&l->mu);
        w->serving = 0;
        if (w->holding && l->holders > 1 && l->contended == 0) {
            /* the contended spell is over: one reader is enough again */
            w->holding = 0;
            l->holders--;
        }
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* Adds us to the monotonic time ts. */
static void loop_deadline(struct timespec *ts, unsigned us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    uint64_t ns = (uint64_t)ts->tv_nsec + (uint64_t)us * 1000u;
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

/* One watchdog tick (mu): a worker that has served the same request for LOOP_STUCK_TICKS,
 * while other requests queue, gives up its role. Returns whether any request was read or
 * served during the tick. */
static int loop_watch(kvfs_loop *l, uint64_t requests_before)
{
    int serving = 0;
    for (size_t i = 0; i < l->nworkers; i++) {
        loop_worker *w = &l->workers[i];
        uint64_t served = w->served;
        w->same_ticks = w->serving && served == w->seen ? w->same_ticks + 1 : 0;
        w->seen = served;
        serving |= w->serving;
        if (w->same_ticks >= LOOP_STUCK_TICKS && w->holding) {
            pthread_mutex_unlock(&l->mu);
            int queued = loop_queued(l);
            pthread_mutex_lock(&l->mu);
            if (queued && w->serving && w->served == served)
                loop_queue_seen(l, w);
        }
    }
    return serving || l->requests != requests_before;
}

/* The watchdog: ticks while requests come (loop_watch), sleeps after a tick without any. */
static void *loop_watchdog_main(void *arg)
{
    kvfs_loop *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->ending) {
        if (!l->watching) {
            pthread_cond_wait(&l->tick, &l->mu);
            continue;
        }
        uint64_t requests = l->requests;
        struct timespec until;
        loop_deadline(&until, LOOP_TICK_US);
        while (!l->ending && pthread_cond_timedwait(&l->tick, &l->mu, &until) != ETIMEDOUT)
            ;
        if (!l->ending && !loop_watch(l, requests))
            l->watching = 0;
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void loop_wake_handler(int sig)
{
    (void)sig; /* its delivery is the point: the worker's read fails with EINTR */
}

/* Installs loop_wake_handler without SA_RESTART, keeping the handler before it. 0 or -1. */
static int loop_install_wake_handler(kvfs_loop *l)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = loop_wake_handler;
    sigemptyset(&sa.sa_mask);
    return sigaction(LOOP_WAKE_SIGNAL, &sa, &l->wake_before);
}

static int loop_init(kvfs_loop *l, struct fuse_session *se, unsigned max_threads, int spin_us)
{
    memset(l, 0, sizeof(*l));
    l->se = se;
    l->fd = fuse_session_fd(se);
    l->max_workers = max_threads ? max_threads : LOOP_DEFAULT_THREADS;
    if (l->max_workers > LOOP_MAX_THREADS)
        l->max_workers = LOOP_MAX_THREADS;
    l->spin_us = spin_us < 0 ? LOOP_DEFAULT_SPIN_US : (unsigned)spin_us;
    if (l->spin_us > LOOP_MAX_SPIN_US)
        l->spin_us = LOOP_MAX_SPIN_US;
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
        l->spin_us = 0;
    l->workers = calloc(l->max_workers, sizeof(*l->workers));
    l->parked = calloc(l->max_workers, sizeof(*l->parked));
    pthread_condattr_t ca;
    int rc = !l->workers || !l->parked ? ENOMEM : 0;
    if (rc == 0 && (rc = pthread_condattr_init(&ca)) == 0) {
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        rc = pthread_cond_init(&l->tick, &ca);
        pthread_condattr_destroy(&ca);
        if (rc == 0 && (rc = pthread_mutex_init(&l->mu, NULL)) != 0)
            pthread_cond_destroy(&l->tick);
    }
    if (rc == 0 && sem_init(&l->ended, 0, 0) != 0) {
        rc = errno;
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->tick);
    }
    if (rc == 0 && loop_install_wake_handler(l) != 0) {
        rc = errno;
        sem_destroy(&l->ended);
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->tick);
    }
    if (rc) {
        free(l->workers);
        free(l->parked);
    }
    return -rc;
}

/* Brings every worker out of the kernel once the loop is ending (file comment). (mu) */
static void loop_interrupt_readers(kvfs_loop *l)
{
    for (;;) {
        int inside = 0;
        for (size_t i = 0; i < l->nworkers; i++) {
            if (l->workers[i].in_kernel) {
                /* cannot fail: the signal is valid and the thread is not joined yet */
                (void)pthread_kill(l->workers[i].tid, LOOP_WAKE_SIGNAL);
                inside = 1;
            }
        }
        if (!inside)
            return;
        pthread_mutex_unlock(&l->mu);
        struct timespec nap = {.tv_sec = 0, .tv_nsec = LOOP_WAKE_RETRY_US * 1000L};
        nanosleep(&nap, NULL);
        pthread_mutex_lock(&l->mu);
    }
}

/* Ends every thread of the loop and frees it (the supervisor, after the session ended). */
static void loop_teardown(kvfs_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->ending = 1;
    for (size_t i = 0; i < l->nworkers; i++)
        pthread_cond_signal(&l->workers[i].wake);
    pthread_cond_signal(&l->tick);
    loop_interrupt_readers(l);
    pthread_mutex_unlock(&l->mu);
    /* no thread starts once ending is set: nworkers is final */
    for (size_t i = 0; i < l->nworkers; i++) {
        pthread_join(l->workers[i].tid, NULL);
        pthread_cond_destroy(&l->workers[i].wake);
        free(l->workers[i].buf.mem);
    }
    if (l->watchdog_started)
        pthread_join(l->watchdog, NULL);
    sem_destroy(&l->ended);
    pthread_cond_destroy(&l->tick);
    pthread_mutex_destroy(&l->mu);
    sigaction(LOOP_WAKE_SIGNAL, &l->wake_before, NULL);
    free(l->workers);
    free(l->parked);
}

int kvfs_loop_run(struct fuse_session *se, unsigned max_threads, int spin_us)
{
    kvfs_loop l;
    int rc = loop_init(&l, se, max_threads, spin_us);
    if (rc)
        return rc;
    pthread_mutex_lock(&l.mu);
    if (loop_spawn(&l) != 0) {
        rc = -EAGAIN;
    } else if ((rc = pthread_create(&l.watchdog, NULL, loop_watchdog_main, &l)) != 0) {
        rc = -rc;
    } else {
        l.watchdog_started = 1;
    }
    pthread_mutex_unlock(&l.mu);

    if (rc == 0) {
        /* Only this thread takes the termination signals (kvfs_block_signals blocked them in
         * every other): a signal interrupts the wait, libfuse's handler having marked the
         * session exited. */
        kvfs_unblock_signals();
        while (!fuse_session_exited(se) && sem_wait(&l.ended) != 0 && errno == EINTR)
            ;
        kvfs_block_signals();
    }
    loop_teardown(&l);
    return rc ? rc : l.error;
}
