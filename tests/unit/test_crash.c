/*
 * test_crash.c -- durability across SIGKILL, through engine/kv.h only.
 *
 * Each cycle forks a child that opens the store and performs an endless series of synced
 * writes ("units"): unit c is a put, a delete, a range deletion of up to 12 keys or a batch
 * of several such ops, all derived from the counter c alone, so the parent can recompute every key
 * and value. After each acknowledged unit the child writes c to a pipe. The parent kills the child
 * with SIGKILL after a random 5-200 ms, reopens the store and checks it against its model:
 *
 *   - every acknowledged unit is present; the one unit that may have been in flight (the
 *     next after the last acknowledgement) is present either wholly or not at all;
 *   - nothing else exists (a full scan finds exactly the model's keys), and every value is
 *     byte-exact, both through a scan and through point gets.
 *
 * State accumulates over ~30 cycles on one directory; a third of the cycles use a tiny
 * memtable and tables so the kills land in flushes and compactions, another third use
 * options.sync_writes instead of KV_WRITE_SYNC. kv_verify must return 0 after every
 * recovery and at the end.
 *
 * KVFS_SEED=N repeats the random choices (kill times still vary); KVFS_CRASH_CYCLES=N.
 */
#include "kv.h"
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#define NKEYS 400
#define MAX_OPS 5

typedef struct op {
    int del;
    int width; /* a range deletion of keys [key, key + width) when > 0 */
    int key;
    uint32_t len;
    uint64_t c; /* unit counter */
    int i;      /* op index within the unit */
} op;

/* What the model holds for one key: the op that wrote its latest value, or absent. */
typedef struct slot {
    int present;
    uint64_t c;
    int i;
    uint32_t len;
} slot;

static slot model[NKEYS];

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void key_of(int k, char *out)
{
    snprintf(out, 16, "ck%04d", k);
}

/* Value bytes of op (c, i): a readable header, then pseudo-random bytes. */
static void gen_value(uint64_t c, int i, uint32_t len, uint8_t *out)
{
    char hdr[48];
    int hl = snprintf(hdr, sizeof hdr, "c=%" PRIu64 " i=%d|", c, i);
    uint64_t x = mix(c * 16 + (uint64_t)i) | 1;
    for (uint32_t j = 0; j < len; j++) {
        if ((j & 7) == 0)
            x = mix(x);
        out[j] = (uint8_t)(x >> ((j & 7) * 8));
    }
    memcpy(out, hdr, (size_t)hl < len ? (size_t)hl : len);
}

/* The ops of unit c. */
static int unit_ops(uint64_t c, op *ops)
{
    uint64_t h = mix(c ^ 0xabcdef);
    int kind = (int)(h % 10);
    int n = kind < 8 ? 1 : 2 + (int)((h >> 8) % (MAX_OPS - 1));
    for (int i = 0; i < n; i++) {
        uint64_t r = mix(c * 8 + (uint64_t)i);
        ops[i].c = c;
        ops[i].i = i;
        ops[i].key = (int)(r % NKEYS);
        ops[i].del = n == 1 ? (kind >= 6) : ((r >> 20) % 4 == 0);
        ops[i].width = 0;
        if (ops[i].del && (r >> 24) % 3 == 0) {
            ops[i].width = 1 + (int)((r >> 28) % 12);
            if (ops[i].key + ops[i].width > NKEYS)
                ops[i].width = NKEYS - ops[i].key;
        }
        uint64_t lr = (r >> 32) % 100;
        ops[i].len = ops[i].del ? 0
                     : lr < 95  ? 10 + (uint32_t)((r >> 40) % 300)
                                : 5000 + (uint32_t)((r >> 40) % 25000);
    }
    return n;
}

static void apply_unit(slot *m, uint64_t c)
{
    op ops[MAX_OPS];
    int n = unit_ops(c, ops);
    for (int i = 0; i < n; i++) {
        int width = ops[i].width ? ops[i].width : 1;
        for (int k = ops[i].key; k < ops[i].key + width; k++) {
            slot *s = &m[k];
            s->present = !ops[i].del;
            s->c = c;
            s->i = i;
            s->len = ops[i].len;
        }
    }
}

/* ------------------------------------------------------------------ child ---- */

typedef struct cycle_opts {
    int tiny;     /* small memtable and tables */
    int sync_opt; /* options.sync_writes = 1 and flags 0 instead of KV_WRITE_SYNC */
} cycle_opts;

static void make_opts(const cycle_opts *co, kv_options *o)
{
    kv_options_init(o);
    if (co->tiny) {
        o->memtable_bytes = 64 << 10;
        o->table_bytes = 64 << 10;
        o->block_bytes = 1024;
        o->wal_segment_bytes = 128 << 10;
    }
    o->sync_writes = co->sync_opt;
}

static void child_run(const char *dir, const cycle_opts *co, uint64_t start, int fd)
{
    kv_options o;
    make_opts(co, &o);
    kv_db *db = NULL;
    int rc = kv_open(dir, &o, &db);
    if (rc) {
        fprintf(stderr, "crash child: kv_open: %d %s\n", rc, kv_last_error());
        _exit(3);
    }
    unsigned flags = co->sync_opt ? 0 : KV_WRITE_SYNC;
    uint8_t *buf = malloc(32 << 10);
    kv_batch *b = kv_batch_new();
    if (!buf || !b)
        _exit(4);
    for (uint64_t c = start;; c++) {
        op ops[MAX_OPS];
        int n = unit_ops(c, ops);
        char k[16];
        if (n == 1 && ops[0].width == 0) {
            key_of(ops[0].key, k);
            if (ops[0].del) {
                rc = kv_delete(db, k, strlen(k), flags);
            } else {
                gen_value(c, 0, ops[0].len, buf);
                rc = kv_put(db, k, strlen(k), buf, ops[0].len, flags);
            }
        } else {
            kv_batch_clear(b);
            for (int i = 0; i < n && rc == 0; i++) {
                key_of(ops[i].key, k);
                if (ops[i].width) {
                    char end[16];
                    key_of(ops[i].key + ops[i].width, end);
                    rc = kv_batch_delete_range(b, k, strlen(k), end, strlen(end));
                } else if (ops[i].del) {
                    rc = kv_batch_delete(b, k, strlen(k));
                } else {
                    gen_value(c, i, ops[i].len, buf);
                    rc = kv_batch_put(b, k, strlen(k), buf, ops[i].len);
                }
            }
            if (rc == 0)
                rc = kv_write(db, b, flags, NULL);
        }
        if (rc) {
            fprintf(stderr, "crash child: write of unit %" PRIu64 " failed: %d %s\n", c, rc,
                    kv_last_error());
            _exit(5);
        }
        if (write(fd, &c, sizeof c) != (ssize_t)sizeof c)
            _exit(6);
    }
}

/* ----------------------------------------------------------------- parent ---- */

static uint8_t *vbuf;
static char mismatch[512];

/* 0 if the store holds exactly state m (scan and gets), else 1 with mismatch[] set. */
static int store_matches(kv_db *db, const slot *m)
{
    int seen[NKEYS];
    memset(seen, 0, sizeof seen);
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    kv_iter *it = NULL;
    int rc = kv_iter_new(db, &io, &it);
    if (rc) {
        snprintf(mismatch, sizeof mismatch, "kv_iter_new: %d %s", rc, kv_last_error());
        return 1;
    }
    int bad = 0;
    for (kv_iter_seek_first(it); kv_iter_valid(it) && !bad; kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        int ki = -1;
        if (kl == 6 && memcmp(k, "ck", 2) == 0) {
            ki = 0;
            for (int d = 2; d < 6; d++)
                ki = (k[d] >= '0' && k[d] <= '9' && ki >= 0) ? ki * 10 + (k[d] - '0') : -1;
            if (ki >= NKEYS)
                ki = -1;
        }
        if (ki < 0) {
            snprintf(mismatch, sizeof mismatch, "scan: unexpected key '%.*s'", (int)kl, k);
            bad = 1;
            break;
        }
        char want_k[16];
        key_of(ki, want_k);
        if (memcmp(want_k, k, 6) != 0) {
            snprintf(mismatch, sizeof mismatch, "scan: unexpected key '%.*s'", (int)kl, k);
            bad = 1;
            break;
        }
        seen[ki] = 1;
        const slot *s = &m[ki];
        if (!s->present) {
            snprintf(mismatch, sizeof mismatch,
                     "scan: key %s exists (value '%.24s'), model says absent (last op c=%" PRIu64
                     " i=%d)",
                     want_k, (const char *)v, s->c, s->i);
            bad = 1;
            break;
        }
        gen_value(s->c, s->i, s->len, vbuf);
        if (vl != s->len || memcmp(v, vbuf, vl) != 0) {
            snprintf(mismatch, sizeof mismatch,
                     "scan: key %s value (len %zu, '%.24s') differs from model (c=%" PRIu64
                     " i=%d len %u)",
                     want_k, vl, vl ? (const char *)v : "", s->c, s->i, s->len);
            bad = 1;
        }
    }
    if (!bad && kv_iter_status(it) != 0) {
        snprintf(mismatch, sizeof mismatch, "scan: status %d %s", kv_iter_status(it),
                 kv_last_error());
        bad = 1;
    }
    kv_iter_free(it);
    if (bad)
        return 1;
    for (int ki = 0; ki < NKEYS; ki++) {
        if (m[ki].present && !seen[ki]) {
            snprintf(mismatch, sizeof mismatch,
                     "scan: key ck%04d missing, model has c=%" PRIu64 " i=%d", ki, m[ki].c,
                     m[ki].i);
            return 1;
        }
        char k[16];
        key_of(ki, k);
        void *v = NULL;
        size_t vl = 0;
        rc = kv_get(db, NULL, k, strlen(k), &v, &vl, NULL);
        if (m[ki].present) {
            gen_value(m[ki].c, m[ki].i, m[ki].len, vbuf);
            if (rc != 0 || vl != m[ki].len || memcmp(v, vbuf, vl) != 0) {
                snprintf(mismatch, sizeof mismatch,
                         "get %s: rc %d len %zu, want c=%" PRIu64 " i=%d len %u", k, rc, vl,
                         m[ki].c, m[ki].i, m[ki].len);
                free(v);
                return 1;
            }
        } else if (rc != -ENOENT) {
            snprintf(mismatch, sizeof mismatch, "get %s: rc %d, want -ENOENT (%s)", k, rc,
                     kv_last_error());
            free(v);
            return 1;
        }
        free(v);
    }
    return 0;
}

static void print_report(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "kv_verify: %s\n", line);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

int main(void)
{
    tu_seed_init();
    signal(SIGPIPE, SIG_IGN);
    int cycles = 30;
    const char *e = getenv("KVFS_CRASH_CYCLES");
    if (e)
        cycles = atoi(e);
    vbuf = malloc(64 << 10);
    CHECK(vbuf != NULL);
    char dir[600];
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("crash"));
    uint64_t next = 1; /* first unit not yet known to be in the store */
    uint64_t total_acked = 0;
    int in_flight_seen = 0;

    for (int cyc = 0; cyc < cycles; cyc++) {
        cycle_opts co = {cyc % 3 == 1, cyc % 3 == 2};
        int p[2];
        CHECK(pipe(p) == 0);
        fflush(NULL);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_run(dir, &co, next, p[1]);
            _exit(7);
        }
        close(p[1]);
        unsigned delay = 5 + (unsigned)tu_rand_below(196);
        sleep_ms(delay);
        CHECK(kill(pid, SIGKILL) == 0);
        int st = 0;
        CHECK(waitpid(pid, &st, 0) == pid);
        if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            fprintf(stderr, "cycle %d: child ended by itself (status 0x%x) before the kill\n", cyc,
                    st);
        CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        uint64_t acked = next - 1, c;
        ssize_t got;
        size_t nacks = 0;
        while ((got = read(p[0], &c, sizeof c)) == (ssize_t)sizeof c) {
            CHECK(c == acked + 1); /* acknowledgements come in order */
            acked = c;
            nacks++;
        }
        CHECK(got == 0);
        close(p[0]);
        total_acked += nacks;

        /* state A: every acknowledged unit; state B: plus the one possibly in flight */
        slot a[NKEYS], b[NKEYS];
        memcpy(a, model, sizeof a);
        for (uint64_t u = next; u <= acked; u++)
            apply_unit(a, u);
        memcpy(b, a, sizeof b);
        apply_unit(b, acked + 1);

        kv_options o;
        make_opts(&co, &o);
        kv_db *db = NULL;
        int rc = kv_open(dir, &o, &db);
        if (rc)
            fprintf(stderr,
                    "cycle %d (kill after %u ms, %zu acks, last unit %" PRIu64
                    "): reopen failed: %d %s\n",
                    cyc, delay, nacks, acked, rc, kv_last_error());
        CHECK_OK(rc);
        if (store_matches(db, a) == 0) {
            memcpy(model, a, sizeof model);
            next = acked + 1;
        } else {
            char first[512];
            snprintf(first, sizeof first, "%s", mismatch);
            if (store_matches(db, b) != 0) {
                fprintf(stderr,
                        "cycle %d (kill after %u ms, tiny=%d sync_opt=%d): store matches neither "
                        "the acknowledged state (units <= %" PRIu64 ") nor that plus unit %" PRIu64
                        ".\n  vs acknowledged: %s\n  vs acknowledged+1: %s\n",
                        cyc, delay, co.tiny, co.sync_opt, acked, acked + 1, first, mismatch);
                CHECK(0);
            }
            memcpy(model, b, sizeof model);
            next = acked + 2;
            in_flight_seen++;
        }
        int problems = kv_verify(db, print_report, NULL);
        if (problems != 0)
            fprintf(stderr, "cycle %d: kv_verify after recovery: %d (%s)\n", cyc, problems,
                    kv_last_error());
        CHECK(problems == 0);
        CHECK_OK(kv_close(db));
    }
    /* and once more, a clean open after the last recovery */
    kv_options o;
    kv_options_init(&o);
    kv_db *db = NULL;
    CHECK_OK(kv_open(dir, &o, &db));
    if (store_matches(db, model) != 0)
        fprintf(stderr, "final open: %s\n", mismatch);
    CHECK(store_matches(db, model) == 0);
    int problems = kv_verify(db, print_report, NULL);
    CHECK(problems == 0);
    CHECK_OK(kv_close(db));
    /* the test must have exercised something */
    CHECK(total_acked > 0);
    printf("test_crash: %d cycles, %" PRIu64 " acknowledged units, %d in-flight units found\n",
           cycles, total_acked, in_flight_seen);
    tu_rmtree(dir);
    free(vbuf);
    TU_DONE("test_crash");
}
