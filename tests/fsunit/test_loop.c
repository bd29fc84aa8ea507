/*
 * test_loop.c -- kvfs's FUSE request loop (fs/loop.c) through a real mount: a tiny filesystem
 * whose handlers record which thread served each request, served by kvfs_loop_run, driven with
 * stat(2) and read(2) from this process's own threads. Checks:
 *   - a serial caller is served by one thread: its next request goes to the thread that served
 *     the last one (libfuse's loop hands every request to another thread);
 *   - once requests stop, the loop uses no CPU (its spinning ends on its own);
 *   - while one request blocks in its handler, other requests are still served;
 *   - parallel callers are served by several threads at once, never more than max_threads;
 *   - the loop ends, returning 0, on unmount and on SIGTERM, also with several workers waiting
 *     in the kernel.
 * The filesystem: the root holds "gate" (a read blocks until the test opens the gate), "slow"
 * (a lookup takes LT_SLOW_US) and every name starting with 'f' (one regular file). Entry and
 * attribute timeouts are 0, so every stat(2) is a LOOKUP request. Needs root and /dev/fuse.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#define LT_GATE_INO 2
#define LT_FILE_INO 3
#define LT_SLOW_INO 4
#define LT_SLOW_US 300
#define LT_MAX_SERVERS 64
#define LT_GATE_WAIT_S 20 /* a gate never opened fails the test instead of hanging it */

static pthread_mutex_t lt_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t lt_cv = PTHREAD_COND_INITIALIZER;
static pthread_t lt_servers[LT_MAX_SERVERS]; /* (lt_mu) threads seen serving */
static int lt_nservers;                      /* (lt_mu) */
static long lt_requests;                     /* (lt_mu) requests counted since lt_reset */
static int lt_last_server = -1;              /* (lt_mu) index of the last request's thread */
static long lt_switches;                     /* (lt_mu) requests served by another thread than
                                                the one before */
static int lt_busy, lt_max_busy;             /* (lt_mu) handlers running now, at most */
static int lt_gate_entered, lt_gate_open, lt_gate_timed_out; /* (lt_mu) */

/* Counts the request for the calling thread and marks a handler running. */
static void lt_enter(void)
{
    pthread_mutex_lock(&lt_mu);
    int i = 0;
    while (i < lt_nservers && !pthread_equal(lt_servers[i], pthread_self()))
        i++;
    if (i == lt_nservers && i < LT_MAX_SERVERS)
        lt_servers[lt_nservers++] = pthread_self();
    lt_requests++;
    if (lt_last_server >= 0 && i != lt_last_server)
        lt_switches++;
    lt_last_server = i;
    if (++lt_busy > lt_max_busy)
        lt_max_busy = lt_busy;
    pthread_mutex_unlock(&lt_mu);
}

static void lt_leave(void)
{
    pthread_mutex_lock(&lt_mu);
    lt_busy--;
    pthread_mutex_unlock(&lt_mu);
}

static void lt_reset(void)
{
    pthread_mutex_lock(&lt_mu);
    lt_nservers = 0;
    lt_requests = 0;
    lt_last_server = -1;
    lt_switches = 0;
    lt_max_busy = lt_busy;
    pthread_mutex_unlock(&lt_mu);
}

/* Requests counted since lt_reset. */
static long lt_total(void)
{
    pthread_mutex_lock(&lt_mu);
    long n = lt_requests;
    pthread_mutex_unlock(&lt_mu);
    return n;
}

static void lt_stat_of(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof(*st));
    st->st_ino = ino;
    st->st_mode = ino == FUSE_ROOT_ID ? S_IFDIR | 0755 : S_IFREG | 0644;
    st->st_nlink = ino == FUSE_ROOT_ID ? 2 : 1;
    st->st_size = ino == LT_GATE_INO ? 4 : 0;
}

static void lt_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    lt_enter();
    fuse_ino_t ino = 0;
    if (parent == FUSE_ROOT_ID && strcmp(name, "gate") == 0)
        ino = LT_GATE_INO;
    else if (parent == FUSE_ROOT_ID && strcmp(name, "slow") == 0)
        ino = LT_SLOW_INO;
    else if (parent == FUSE_ROOT_ID && name[0] == 'f')
        ino = LT_FILE_INO;
    if (ino == LT_SLOW_INO)
        usleep(LT_SLOW_US);
    lt_leave();
    if (!ino) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = ino;
    lt_stat_of(ino, &e.attr);
    fuse_reply_entry(req, &e);
}

static void lt_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    lt_enter();
    struct stat st;
    lt_stat_of(ino, &st);
    lt_leave();
    fuse_reply_attr(req, &st, 0);
}

static void lt_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fi->direct_io = 1;
    fuse_reply_open(req, fi);
}

/* A read of "gate" waits until the test opens the gate (at most LT_GATE_WAIT_S). */
static void lt_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    (void)fi;
    if (ino != LT_GATE_INO || off >= 4) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    lt_enter();
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += LT_GATE_WAIT_S;
    pthread_mutex_lock(&lt_mu);
    lt_gate_entered = 1;
    pthread_cond_broadcast(&lt_cv);
    while (!lt_gate_open && !lt_gate_timed_out)
        if (pthread_cond_timedwait(&lt_cv, &lt_mu, &until) == ETIMEDOUT)
            lt_gate_timed_out = 1;
    pthread_mutex_unlock(&lt_mu);
    lt_leave();
    fuse_reply_buf(req, "open", size < 4 ? size : 4);
}

static const struct fuse_lowlevel_ops lt_ops = {
    .lookup = lt_lookup,
    .getattr = lt_getattr,
    .open = lt_open,
    .read = lt_read,
};

/* A failed check exits with the mount still there: take it away, and its directory. */
static char lt_mnt[512];
static void lt_cleanup(void)
{
    if (lt_mnt[0] && umount2(lt_mnt, MNT_DETACH) == 0)
        rmdir(lt_mnt);
}

/* ---- one mounted session served by kvfs_loop_run in a supervisor thread ---- */

typedef struct lt_session {
    struct fuse_session *se;
    char mnt[512];
    unsigned max_threads;
    pthread_t supervisor;
    int loop_rc;
} lt_session;

static void *lt_supervise(void *arg)
{
    lt_session *s = arg;
    s->loop_rc = kvfs_loop_run(s->se, s->max_threads, -1);
    return NULL;
}

static void lt_mount(lt_session *s, const char *mnt, unsigned max_threads)
{
    char *argv[] = {"test_loop", "-o", "fsname=kvfs-loop-test", NULL};
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    snprintf(s->mnt, sizeof s->mnt, "%s", mnt);
    s->max_threads = max_threads;
    s->se = fuse_session_new(&args, &lt_ops, sizeof lt_ops, NULL);
    fuse_opt_free_args(&args);
    CHECK(s->se != NULL);
    CHECK(fuse_set_signal_handlers(s->se) == 0);
    CHECK(fuse_session_mount(s->se, mnt) == 0);
    CHECK(pthread_create(&s->supervisor, NULL, lt_supervise, s) == 0);
    struct stat st;
    CHECK(stat(mnt, &st) == 0 && st.st_ino == FUSE_ROOT_ID);
}

/* Waits (at most 10 s) for the loop to return, then tears the session down. */
static void lt_wait_end(lt_session *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    CHECK(pthread_timedjoin_np(s->supervisor, NULL, &until) == 0);
    CHECK(s->loop_rc == 0);
    fuse_remove_signal_handlers(s->se);
    fuse_session_unmount(s->se);
    fuse_session_destroy(s->se);
}

static void lt_stat_names(const char *mnt, const char *prefix, int n)
{
    char p[1024];
    struct stat st;
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s%06d", mnt, prefix, i);
        CHECK(stat(p, &st) == 0 && st.st_ino == LT_FILE_INO);
    }
}

/* ---- the checks ---- */

static void test_serial_caller_one_thread(const char *mnt)
{
    lt_reset();
    lt_stat_names(mnt, "f", 3000);
    long total = lt_total();
    printf("serial: %ld requests, %ld served by another thread than the request before\n", total,
           lt_switches);
    CHECK(total >= 3000);
    /* libfuse's loop: ~99% (every request goes to the longest waiting thread). Here none on
     * an idle machine; a worker preempted for a whole tick by other load hands its role on,
     * and a contended spell follows (up to ~8% with two CPU hogs beside the test). */
    CHECK(lt_switches * 4 <= total);
}

static double lt_cpu_seconds(void)
{
    struct timespec ts;
    CHECK(clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) == 0);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Right after a serial caller (whose requests the loop spins for) stops, the loop costs no
 * CPU: every spin ends on its own, the watchdog sleeps. This process is the loop's, and its
 * own threads sleep meanwhile. */
static void test_idle_loop_sleeps(const char *mnt)
{
    lt_stat_names(mnt, "f", 2000);
    double before = lt_cpu_seconds();
    struct timespec nap = {0, 400 * 1000 * 1000};
    CHECK(nanosleep(&nap, NULL) == 0);
    double used = lt_cpu_seconds() - before;
    printf("idle: %.1f ms of CPU in 400 ms after the last request\n", used * 1e3);
    /* a worker that kept spinning would use ~400 ms; a sleeping loop ~0 */
    CHECK(used < 0.040);
}

typedef struct lt_gate_reader {
    const char *mnt;
    char got[8];
    ssize_t n;
} lt_gate_reader;

static void *lt_read_gate(void *arg)
{
    lt_gate_reader *g = arg;
    char p[1024];
    snprintf(p, sizeof p, "%s/gate", g->mnt);
    int fd = open(p, O_RDONLY);
    g->n = fd < 0 ? -1 : read(fd, g->got, sizeof g->got);
    if (fd >= 0)
        close(fd);
    return NULL;
}

static void test_blocked_request_does_not_stall(const char *mnt)
{
    lt_gate_reader g = {.mnt = mnt};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, lt_read_gate, &g) == 0);
    pthread_mutex_lock(&lt_mu);
    while (!lt_gate_entered && !lt_gate_timed_out)
        pthread_cond_wait(&lt_cv, &lt_mu);
    pthread_mutex_unlock(&lt_mu);
    /* the gate's handler holds one worker: these must be served by others meanwhile */
    lt_stat_names(mnt, "f", 200);
    pthread_mutex_lock(&lt_mu);
    int timed_out = lt_gate_timed_out;
    lt_gate_open = 1;
    pthread_cond_broadcast(&lt_cv);
    pthread_mutex_unlock(&lt_mu);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(!timed_out);
    CHECK(g.n == 4 && memcmp(g.got, "open", 4) == 0);
    printf("blocked: 200 stats served while a read waited in its handler\n");
}

static void *lt_stat_slow(void *arg)
{
    char p[1024];
    struct stat st;
    snprintf(p, sizeof p, "%s/slow", (const char *)arg);
    for (int i = 0; i < 200; i++)
        if (stat(p, &st) != 0 || st.st_ino != LT_SLOW_INO)
            return (void *)1;
    return NULL;
}

/* Four callers of a 300 us lookup at once: served side by side, by at most max_threads. */
static void test_parallel_callers(const char *mnt, int max_threads)
{
    pthread_t t[4];
    lt_reset();
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, lt_stat_slow, (void *)mnt) == 0);
    for (int i = 0; i < 4; i++) {
        void *bad;
        CHECK(pthread_join(t[i], &bad) == 0);
        CHECK(bad == NULL);
    }
    long total = lt_total();
    printf("parallel (max_threads %d): %ld requests, %d threads, at most %d at once\n", max_threads,
           total, lt_nservers, lt_max_busy);
    CHECK(total >= 800);
    CHECK(lt_max_busy >= 2);
    CHECK(lt_max_busy <= max_threads);
}

int main(void)
{
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
        fprintf(stderr, "test_loop: /dev/fuse: %s (needs root and the fuse module)\n",
                strerror(errno));
        return 1;
    }
    const char *mnt = tu_tmpdir("loop");
    snprintf(lt_mnt, sizeof lt_mnt, "%s", mnt);
    atexit(lt_cleanup);
    /* before any thread starts: only each loop's supervisor takes SIGTERM */
    kvfs_block_signals();

    lt_session s;
    lt_mount(&s, mnt, 0);
    test_serial_caller_one_thread(mnt);
    test_idle_loop_sleeps(mnt);
    test_blocked_request_does_not_stall(mnt);
    test_parallel_callers(mnt, 10);
    CHECK(umount2(mnt, MNT_DETACH) == 0); /* the read fails with ENODEV: the loop ends */
    lt_wait_end(&s);
    printf("unmount ended the loop\n");

    lt_mount(&s, mnt, 2);
    test_parallel_callers(mnt, 2);
    CHECK(kill(getpid(), SIGTERM) == 0); /* blocked here: the supervisor takes it */
    lt_wait_end(&s);
    struct stat st;
    CHECK(stat(mnt, &st) == 0 && st.st_ino != FUSE_ROOT_ID);
    printf("SIGTERM ended the loop\n");

    /* right after parallel callers several workers wait in the kernel: each must be brought
     * out of its read (loop.c, "Shutdown") */
    lt_mount(&s, mnt, 10);
    test_parallel_callers(mnt, 10);
    CHECK(kill(getpid(), SIGTERM) == 0);
    lt_wait_end(&s);
    CHECK(stat(mnt, &st) == 0 && st.st_ino != FUSE_ROOT_ID);
    printf("SIGTERM ended the loop with several readers in the kernel\n");

    lt_mnt[0] = 0;
    rmdir(mnt);
    TU_DONE("test_loop");
}
