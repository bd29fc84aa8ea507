/*
 * test_corruption.c -- damaged files must give a clean error, never a crash, hang or wrong
 * value; through engine/kv.h only.
 *
 * A base store is built with data in SSTables at two levels (flush, compact_range, more
 * overwrites and deletes, flush), a WAL holding the newest writes (fixed-size records), and
 * a MANIFEST whose last record is a named snapshot. For each file type (.sst, .log,
 * MANIFEST-*, CURRENT) the directory is copied and the copy damaged: single bit flips at many
 * offsets, truncation at many lengths, a zeroed range, replacement by a foreign file. Then
 * the copy is opened and read completely (a full scan, a get of every key, kv_verify).
 *
 * Accepted outcomes:
 *   - kv_open fails with -EUCLEAN and kv_last_error() names the damaged file (for CURRENT,
 *     "CURRENT" or the MANIFEST it points to);
 *   - kv_open succeeds, and every get and every scanned entry is byte-exact for the expected
 *     state or fails with -EUCLEAN naming the damaged file (so do kv_verify reports); a scan
 *     may stop with -EUCLEAN but must not skip or invent entries before it stops;
 *   - expected state: the whole store, except for damage to the WAL, where the store may
 *     be missing a suffix of the WAL's records, and only records at or after the damage.
 *     WAL damage with intact records after it (mid-log corruption) must refuse to open with
 *     -EUCLEAN; with opts.salvage = 1 it opens with the records before the damage. A
 *     truncated WAL is a torn tail and must open.
 * A SIGALRM watchdog turns a hang into a failure naming the trial. Run it under ASan too.
 *
 * KVFS_SEED=N repeats a run; KVFS_CORRUPT_RANDOM=N sets random offsets per file (default 20).
 */
#include "kv.h"
#include "testutil.h"

#include <dirent.h>
#include <setjmp.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#define NK 500   /* key universe: "c00000" .. */
#define NWAL 250 /* records in the WAL */
#define WAL_VLEN 200
#define ST_ABSENT (-1)

/* The last notice the store gave through kv_set_log. */
static char noticed[1024];

static void catch_notice(const char *line)
{
    snprintf(noticed, sizeof noticed, "%s", line);
}

static int st_sst[NK];    /* value version per key after the SST phases, or ST_ABSENT */
static int wal_key[NWAL]; /* key written by WAL record w (value version 1000 + w) */
static uint8_t *vbuf;
static char base[600], trial_dir[700];
static char trial_desc[600];

enum ftype { F_SST, F_LOG, F_MANIFEST, F_CURRENT };
static const char *const ftype_name[] = {"sst", "log", "MANIFEST", "CURRENT"};

/* ----------------------------------------------------------------- values ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static void key_of(int k, char *out)
{
    snprintf(out, 16, "c%05d", k);
}

static uint32_t vlen_of(int k, int ver)
{
    if (ver >= 1000)
        return WAL_VLEN;
    return 50 + (uint32_t)(mix((uint64_t)k * 31 + (uint64_t)ver) % 1450);
}

/* "k=KKKKK v=VVVV|" then bytes that compress partly. */
static uint32_t gen_value(int k, int ver, uint8_t *out)
{
    uint32_t len = vlen_of(k, ver);
    char hdr[32];
    int hl = snprintf(hdr, sizeof hdr, "k=%05d v=%04d|", k, ver);
    uint64_t x = mix((uint64_t)k << 20 | (uint64_t)ver) | 1;
    for (uint32_t i = 0; i < len; i++) {
        if ((i & 7) == 0)
            x = mix(x);
        out[i] = (i & 32) ? (uint8_t)('A' + i % 7) : (uint8_t)(x >> ((i & 7) * 8));
    }
    memcpy(out, hdr, (size_t)hl);
    return len;
}

/* The version of a returned value of key k, or -2 if the bytes are not one we wrote. */
static int value_version(int k, const uint8_t *v, size_t vl)
{
    if (vl < 15)
        return -2;
    char hdr[16];
    memcpy(hdr, v, 15);
    hdr[15] = 0;
    int hk, hv;
    if (sscanf(hdr, "k=%5d v=%4d|", &hk, &hv) != 2 || hk != k || hv < 1)
        return -2;
    if (vl != vlen_of(k, hv))
        return -2;
    gen_value(k, hv, vbuf);
    return memcmp(vbuf, v, vl) == 0 ? hv : -2;
}

/* ------------------------------------------------------------ base store ---- */

static kv_db *open_or_die(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    kv_db *db = NULL;
    CHECK_OK(kv_open(dir, &o, &db));
    return db;
}

static void put_ver(kv_db *db, int k, int ver)
{
    char key[16];
    key_of(k, key);
    uint32_t len = gen_value(k, ver, vbuf);
    CHECK_OK(kv_put(db, key, strlen(key), vbuf, len, 0));
}

static void build_base(void)
{
    kv_db *db = open_or_die(base);
    for (int k = 0; k < NK; k++)
        st_sst[k] = ST_ABSENT;
    for (int k = 0; k < 400; k++) {
        put_ver(db, k, 1);
        st_sst[k] = 1;
    }
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    for (int k = 0; k < 450; k++) {
        if (k % 7 == 0 && k < 400) {
            char key[16];
            key_of(k, key);
            CHECK_OK(kv_delete(db, key, strlen(key), 0));
            st_sst[k] = ST_ABSENT;
        } else if (k % 4 == 0 || k >= 400) {
            put_ver(db, k, 2);
            st_sst[k] = 2;
        }
    }
    CHECK_OK(kv_flush(db));
    for (int w = 0; w < NWAL; w++) {
        wal_key[w] = (int)((w * 37) % NK);
        put_ver(db, wal_key[w], 1000 + w);
    }
    CHECK_OK(kv_named_snapshot_create(db, "corruption-test", NULL));
    CHECK_OK(kv_close(db));
}

/* Expected state with the first j WAL records applied. */
static void state_j(int j, int *st)
{
    memcpy(st, st_sst, sizeof st_sst);
    for (int w = 0; w < j; w++)
        st[wal_key[w]] = 1000 + w;
}

/* ------------------------------------------------------------- file helpers ---- */

static void copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    CHECK(in >= 0);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(out >= 0);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        CHECK(write(out, buf, (size_t)n) == n);
    CHECK(n == 0);
    close(in);
    close(out);
}

static void copy_dir(const char *from, const char *to)
{
    CHECK(mkdir(to, 0755) == 0);
    DIR *d = opendir(from);
    CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || !strcmp(e->d_name, "LOCK"))
            continue;
        char a[1400], b[1400];
        snprintf(a, sizeof a, "%s/%s", from, e->d_name);
        snprintf(b, sizeof b, "%s/%s", to, e->d_name);
        copy_file(a, b);
    }
    closedir(d);
}

static uint64_t file_size(const char *p)
{
    struct stat st;
    CHECK(stat(p, &st) == 0);
    return (uint64_t)st.st_size;
}

static uint8_t *read_whole(const char *p, size_t *n)
{
    *n = (size_t)file_size(p);
    uint8_t *buf = malloc(*n + 1);
    CHECK(buf != NULL);
    int fd = open(p, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(read(fd, buf, *n) == (ssize_t)*n);
    close(fd);
    return buf;
}

static void write_whole(const char *p, const uint8_t *buf, size_t n)
{
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, buf, n) == (ssize_t)n);
    close(fd);
}

/* Base files by type. */
typedef struct target {
    char name[256];
    enum ftype type;
    uint64_t size;
} target;
static target targets[64];
static int ntargets;

static void list_targets(void)
{
    DIR *d = opendir(base);
    CHECK(d != NULL);
    struct dirent *e;
    uint64_t newest_log = 0;
    int log_idx = -1;
    while ((e = readdir(d)) != NULL && ntargets < 64) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        target t;
        snprintf(t.name, sizeof t.name, "%s", n);
        char p[1000];
        snprintf(p, sizeof p, "%s/%s", base, n);
        if (l > 4 && !strcmp(n + l - 4, ".sst"))
            t.type = F_SST;
        else if (l > 4 && !strcmp(n + l - 4, ".log"))
            t.type = F_LOG;
        else if (!strncmp(n, "MANIFEST-", 9))
            t.type = F_MANIFEST;
        else if (!strcmp(n, "CURRENT"))
            t.type = F_CURRENT;
        else
            continue;
        t.size = file_size(p);
        if (t.type == F_LOG) { /* only the WAL that holds our records: the newest segment (the
                                  older ones are obsolete, kept for reuse) */
            uint64_t number = strtoull(n, NULL, 10);
            if (number <= newest_log)
                continue;
            newest_log = number;
            if (log_idx >= 0) {
                targets[log_idx] = t;
                continue;
            }
            log_idx = ntargets;
        }
        targets[ntargets++] = t;
    }
    closedir(d);
    int have[4] = {0, 0, 0, 0};
    for (int i = 0; i < ntargets; i++)
        have[targets[i].type]++;
    for (int t = 0; t < 4; t++) {
        if (!have[t])
            fprintf(stderr, "base store has no %s file\n", ftype_name[t]);
        CHECK(have[t] > 0);
    }
    CHECK(have[F_SST] >= 2);
}

/* ------------------------------------------------------------------ trials ---- */

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "test_corruption: trial hung (watchdog): ";
    if (write(2, msg, sizeof msg - 1) < 0 || write(2, trial_desc, strlen(trial_desc)) < 0 ||
        write(2, "\n", 1) < 0) {
    }
    _exit(1);
}

typedef struct damage {
    enum { D_FLIP, D_TRUNC, D_ZERO, D_FOREIGN_RANDOM, D_FOREIGN_FILE } kind;
    uint64_t off; /* flip/zero offset, truncation length */
    uint64_t len; /* zeroed bytes */
    int bit;
    const char *foreign; /* base file name to copy over the target */
} damage;

static void apply_damage(const target *t, const damage *d)
{
    char p[1000];
    snprintf(p, sizeof p, "%s/%s", trial_dir, t->name);
    size_t n;
    uint8_t *buf = read_whole(p, &n);
    switch (d->kind) {
    case D_FLIP:
        buf[d->off] ^= (uint8_t)(1u << d->bit);
        write_whole(p, buf, n);
        break;
    case D_TRUNC:
        write_whole(p, buf, (size_t)d->off);
        break;
    case D_ZERO:
        memset(buf + d->off, 0, (size_t)d->len);
        write_whole(p, buf, n);
        break;
    case D_FOREIGN_RANDOM:
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)tu_rand();
        write_whole(p, buf, n);
        break;
    case D_FOREIGN_FILE: {
        char f[1000];
        snprintf(f, sizeof f, "%s/%s", base, d->foreign);
        copy_file(f, p);
        break;
    }
    }
    free(buf);
}

static const target *cur_target;

/* A failed trial is reported and the run goes on with the next trial (the test fails at the
 * end), so one run shows every kind of damage the engine mishandles. */
static jmp_buf trial_jmp;
static int in_trial;
static int trial_failures;
#define TRIAL_FAIL(...)                                                                            \
    do {                                                                                           \
        if (++trial_failures <= 40) {                                                              \
            fprintf(stderr, "corruption trial [%s]: ", trial_desc);                                \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, " (seed %" PRIu64 ")\n", tu_seed);                                     \
        }                                                                                          \
        if (!in_trial)                                                                             \
            exit(1);                                                                               \
        longjmp(trial_jmp, 1);                                                                     \
    } while (0)

/* An error must be -EUCLEAN and name the damaged file. */
static void check_error(int rc, const char *what)
{
    const char *msg = kv_last_error();
    if (rc != -EUCLEAN)
        TRIAL_FAIL("%s failed with %d (%s), want -EUCLEAN", what, rc, msg);
    int named = strstr(msg, cur_target->name) != NULL;
    if (cur_target->type == F_CURRENT)
        named = named || strstr(msg, "MANIFEST") != NULL;
    if (!named)
        TRIAL_FAIL("%s: -EUCLEAN message does not name %s: \"%s\"", what, cur_target->name, msg);
}

typedef struct vreport {
    int n, named;
} vreport;

static void verify_report(void *arg, const char *line)
{
    vreport *r = arg;
    r->n++;
    if (strstr(line, cur_target->name) ||
        (cur_target->type == F_CURRENT && strstr(line, "MANIFEST")))
        r->named++;
    else
        fprintf(stderr, "  (kv_verify report not naming %s: %s)\n", cur_target->name, line);
}

/* Reads everything. OUT: got[k] = version seen by get (ST_ABSENT, or -3 for an error).
 * Values must be byte-exact versions we wrote. Returns the number of reported errors. */
static int read_all(kv_db *db, int *got, int *scan, int *scan_n, int *scan_err)
{
    int errors = 0;
    for (int k = 0; k < NK; k++) {
        char key[16];
        key_of(k, key);
        void *v = NULL;
        size_t vl = 0;
        int rc = kv_get(db, NULL, key, strlen(key), &v, &vl, NULL);
        if (rc == 0) {
            got[k] = value_version(k, v, vl);
            if (got[k] == -2)
                TRIAL_FAIL("get %s returned a value we never wrote (len %zu, '%.15s')", key, vl,
                           (char *)v);
        } else if (rc == -ENOENT) {
            got[k] = ST_ABSENT;
        } else {
            check_error(rc, "kv_get");
            got[k] = -3;
            errors++;
        }
        free(v);
    }
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    kv_iter *it = NULL;
    int rc = kv_iter_new(db, &io, &it);
    *scan_n = 0;
    *scan_err = 0;
    if (rc) {
        check_error(rc, "kv_iter_new");
        *scan_err = 1;
        return errors + 1;
    }
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const char *k = kv_iter_key(it, &kl);
        const uint8_t *v = kv_iter_value(it, &vl);
        int ki = -1;
        if (kl == 6 && k[0] == 'c') {
            ki = 0;
            for (int d = 1; d < 6; d++)
                ki = (ki >= 0 && k[d] >= '0' && k[d] <= '9') ? ki * 10 + (k[d] - '0') : -1;
        }
        if (ki < 0 || ki >= NK)
            TRIAL_FAIL("scan returned a key we never wrote ('%.*s')", (int)kl, k);
        if (*scan_n > 0 && scan[2 * (*scan_n - 1)] >= ki)
            TRIAL_FAIL("scan out of order at key %d", ki);
        int ver = value_version(ki, v, vl);
        if (ver == -2)
            TRIAL_FAIL("scan: key %d has a value we never wrote (len %zu)", ki, vl);
        scan[2 * *scan_n] = ki;
        scan[2 * *scan_n + 1] = ver;
        (*scan_n)++;
        if (*scan_n >= NK)
            break;
    }
    rc = kv_iter_status(it);
    if (rc) {
        check_error(rc, "iteration");
        *scan_err = 1;
        errors++;
    }
    kv_iter_free(it);
    vreport vr = {0, 0};
    int problems = kv_verify(db, verify_report, &vr);
    if (problems < 0) {
        check_error(problems, "kv_verify");
        errors++;
    } else if (problems > 0) {
        if (vr.named == 0)
            TRIAL_FAIL("kv_verify found %d problems, none naming %s", problems, cur_target->name);
        errors++;
    }
    return errors;
}

/* gets and scan agree with st (gets: except errors; scan: a prefix if it stopped on error). */
static const char *matches_state(const int *st, const int *got, const int *scan, int scan_n,
                                 int scan_err)
{
    static char why[200];
    for (int k = 0; k < NK; k++)
        if (got[k] != -3 && got[k] != st[k]) {
            snprintf(why, sizeof why, "get c%05d: version %d, want %d", k, got[k], st[k]);
            return why;
        }
    int i = 0;
    for (int k = 0; k < NK; k++) {
        if (st[k] == ST_ABSENT)
            continue;
        if (i == scan_n) {
            if (scan_err)
                return NULL;
            snprintf(why, sizeof why, "scan misses c%05d (version %d)", k, st[k]);
            return why;
        }
        if (scan[2 * i] != k || scan[2 * i + 1] != st[k]) {
            snprintf(why, sizeof why, "scan entry %d is c%05d v%d, want c%05d v%d", i, scan[2 * i],
                     scan[2 * i + 1], k, st[k]);
            return why;
        }
        i++;
    }
    if (i != scan_n) {
        snprintf(why, sizeof why, "scan has extra entries after c%05d", scan[2 * (i - 1)]);
        return why;
    }
    return NULL;
}

static uint64_t wal_size;

/* Runs one trial; returns the outcome ('E' open error, 'e' read error, 'c' clean). */
static char run_trial(const target *t, const damage *d, int salvage_check)
{
    static int trial_no;
    cur_target = t;
    snprintf(trial_dir, sizeof trial_dir, "%s-t%d", base, trial_no++);
    copy_dir(base, trial_dir);
    apply_damage(t, d);
    alarm(60);
    if (setjmp(trial_jmp)) {
        /* failed: the handle (if any) is leaked on purpose, the directory kept for study */
        alarm(0);
        in_trial = 0;
        return 'F';
    }
    in_trial = 1;
    kv_options o;
    kv_options_init(&o);
    kv_db *db = NULL;
    int rc = kv_open(trial_dir, &o, &db);
    double r_eff = (double)wal_size / NWAL;
    int is_log = t->type == F_LOG;
    uint64_t dstart = d->off, dend = d->kind == D_ZERO ? d->off + d->len : d->off + 1;
    int foreign = d->kind == D_FOREIGN_RANDOM || d->kind == D_FOREIGN_FILE;
    char outcome;
    int got[NK], scan[2 * NK], scan_n, scan_err;
    int st[NK];
    if (rc != 0) {
        if (is_log && d->kind == D_TRUNC)
            TRIAL_FAIL("a truncated WAL is a torn tail and must open, got %d (%s)", rc,
                       kv_last_error());
        check_error(rc, "kv_open");
        outcome = 'E';
        if (is_log && salvage_check && d->kind != D_TRUNC && !foreign) {
            /* mid-log damage: salvage opens with the records before it */
            o.salvage = 1;
            rc = kv_open(trial_dir, &o, &db);
            if (rc)
                TRIAL_FAIL("salvage open failed: %d (%s)", rc, kv_last_error());
            int errors = read_all(db, got, scan, &scan_n, &scan_err);
            int lo = (int)(dstart / r_eff) - 2, hi = (int)(dstart / r_eff) + 1;
            int found = -1;
            for (int j = hi > NWAL ? NWAL : hi; j >= (lo < 0 ? 0 : lo) && found < 0; j--) {
                state_j(j, st);
                if (!matches_state(st, got, scan, scan_n, scan_err))
                    found = j;
            }
            if (errors || found < 0)
                TRIAL_FAIL("salvage open: %d errors; state is not the WAL records before the "
                           "damage at %" PRIu64 " (records %d..%d expected)",
                           errors, dstart, lo, hi);
            CHECK_OK(kv_close(db));
        }
    } else {
        int errors = read_all(db, got, scan, &scan_n, &scan_err);
        outcome = errors ? 'e' : 'c';
        if (!is_log) {
            state_j(NWAL, st);
            const char *why = matches_state(st, got, scan, scan_n, scan_err);
            if (why)
                TRIAL_FAIL("wrong data after damage to %s: %s", t->name, why);
        } else {
            int found = -1;
            const char *why = NULL;
            for (int j = NWAL; j >= 0 && found < 0; j--) {
                state_j(j, st);
                if (!matches_state(st, got, scan, scan_n, scan_err))
                    found = j;
                else if (j == NWAL)
                    why = matches_state(st, got, scan, scan_n, scan_err);
            }
            if (found < 0)
                TRIAL_FAIL("store is not the SST data plus a prefix of the WAL (vs all: %s)", why);
            if (found < NWAL && !foreign) {
                int first_lost_min = (int)(dstart / r_eff) - 2;
                if (found < first_lost_min)
                    TRIAL_FAIL("WAL records %d.. lost, but the damage starts at offset %" PRIu64
                               " (about record %d)",
                               found, dstart, (int)(dstart / r_eff));
                if (d->kind == D_TRUNC && found > (int)(dstart / r_eff) + 1)
                    TRIAL_FAIL("%d WAL records survive truncation at %" PRIu64, found, dstart);
                if (d->kind != D_TRUNC && (double)dend < (double)wal_size - 2 * r_eff)
                    TRIAL_FAIL("mid-WAL damage at offset %" PRIu64 " of %" PRIu64
                               " silently dropped records %d..%d instead of refusing (-EUCLEAN)",
                               dstart, wal_size, found, NWAL - 1);
            }
        }
        CHECK_OK(kv_close(db));
    }
    alarm(0);
    in_trial = 0;
    tu_rmtree(trial_dir);
    return outcome;
}

static void run_set(const target *t, const char *other_file)
{
    int nrand = 20;
    const char *e = getenv("KVFS_CORRUPT_RANDOM");
    if (e)
        nrand = atoi(e);
    uint64_t s = t->size;
    int counts[4] = {0, 0, 0, 0}; /* E e c F */
    damage d;
#define RUN(desc_fmt, ...)                                                                         \
    do {                                                                                           \
        snprintf(trial_desc, sizeof trial_desc, "%.200s: " desc_fmt, t->name, __VA_ARGS__);        \
        char oc = run_trial(t, &d, 1);                                                             \
        counts[oc == 'E' ? 0 : oc == 'e' ? 1 : oc == 'c' ? 2 : 3]++;                               \
    } while (0)

    /* bit flips: the head, the tail (footer / last record), and random offsets */
    uint64_t offs[256];
    int no = 0;
    for (uint64_t i = 0; i < 12 && i < s; i++)
        offs[no++] = i;
    for (uint64_t i = 1; i <= 64 && i <= s; i += (i < 16 ? 1 : 6))
        offs[no++] = s - i;
    for (int i = 0; i < nrand && s > 0; i++)
        offs[no++] = tu_rand_below(s);
    if (t->type == F_LOG)
        offs[no++] = s / 2;
    for (int i = 0; i < no; i++) {
        memset(&d, 0, sizeof d);
        d.kind = D_FLIP;
        d.off = offs[i];
        d.bit = (int)tu_rand_below(8);
        RUN("flip bit %d at offset %" PRIu64 " of %" PRIu64, d.bit, d.off, s);
    }
    /* truncations */
    uint64_t lens[64];
    int nl = 0;
    lens[nl++] = 0;
    if (s > 1)
        lens[nl++] = 1;
    lens[nl++] = s / 2;
    for (uint64_t i = 1; i <= 48 && i < s; i *= 2)
        lens[nl++] = s - i;
    for (int i = 0; i < nrand / 2 && s > 0; i++)
        lens[nl++] = tu_rand_below(s);
    for (int i = 0; i < nl; i++) {
        memset(&d, 0, sizeof d);
        d.kind = D_TRUNC;
        d.off = lens[i];
        RUN("truncate to %" PRIu64 " of %" PRIu64, d.off, s);
    }
    /* zeroed ranges */
    for (int i = 0; i < 6 && s > 0; i++) {
        memset(&d, 0, sizeof d);
        d.kind = D_ZERO;
        d.off = i == 0 ? 0 : i == 1 ? (s > 100 ? s - 100 : 0) : tu_rand_below(s);
        d.len = 1 + tu_rand_below(4096);
        if (d.off + d.len > s)
            d.len = s - d.off;
        RUN("zero %" PRIu64 " bytes at %" PRIu64 " of %" PRIu64, d.len, d.off, s);
    }
    /* foreign files */
    memset(&d, 0, sizeof d);
    d.kind = D_FOREIGN_RANDOM;
    RUN("replaced by %" PRIu64 " random bytes", s);
    memset(&d, 0, sizeof d);
    d.kind = D_FOREIGN_FILE;
    d.foreign = other_file;
    RUN("replaced by a copy of %.60s", other_file);
    printf("  %-20s open refused %d, read error %d, clean %d, FAILED %d\n", t->name, counts[0],
           counts[1], counts[2], counts[3]);
#undef RUN
}

/* The explicit salvage case: a WAL damaged in the middle. */
static void test_salvage(const target *wal)
{
    damage d;
    memset(&d, 0, sizeof d);
    d.kind = D_FLIP;
    d.off = wal->size / 2;
    d.bit = 3;
    snprintf(trial_desc, sizeof trial_desc, "salvage: %.200s flip at %" PRIu64, wal->name, d.off);
    cur_target = wal;
    snprintf(trial_dir, sizeof trial_dir, "%s-salvage", base);
    copy_dir(base, trial_dir);
    apply_damage(wal, &d);
    kv_options o;
    kv_options_init(&o);
    kv_db *db = NULL;
    int rc = kv_open(trial_dir, &o, &db);
    if (rc == 0) {
        kv_close(db);
        TRIAL_FAIL("a WAL corrupted in the middle opened without salvage");
    }
    check_error(rc, "kv_open without salvage");
    /* refusing must not have changed anything: a second try refuses the same way */
    rc = kv_open(trial_dir, &o, &db);
    check_error(rc, "second kv_open without salvage");
    tu_rmtree(trial_dir);
    char oc = run_trial(wal, &d, 1); /* includes the salvage open and its checks */
    if (oc == 'F')
        return;
    CHECK(oc == 'E');
    /* after a salvage open the store is usable and stays as salvaged */
    snprintf(trial_dir, sizeof trial_dir, "%s-salvage2", base);
    copy_dir(base, trial_dir);
    apply_damage(wal, &d);
    o.salvage = 1;
    noticed[0] = '\0';
    kv_set_log(catch_notice); /* what salvage dropped is told through kv_set_log's hook */
    CHECK_OK(kv_open(trial_dir, &o, &db));
    kv_set_log(NULL);
    CHECK(strstr(noticed, "salvage: ") != NULL && strstr(noticed, ".log") != NULL);
    CHECK_OK(kv_put(db, "after-salvage", 13, "x", 1, KV_WRITE_SYNC));
    CHECK_OK(kv_close(db));
    o.salvage = 0;
    rc = kv_open(trial_dir, &o, &db);
    if (rc)
        TRIAL_FAIL("reopen after salvage (without salvage) failed: %d (%s)", rc, kv_last_error());
    void *v = NULL;
    size_t vl;
    CHECK_OK(kv_get(db, NULL, "after-salvage", 13, &v, &vl, NULL));
    free(v);
    CHECK(kv_verify(db, NULL, NULL) == 0);
    CHECK_OK(kv_close(db));
    tu_rmtree(trial_dir);
}

int main(void)
{
    tu_seed_init();
    signal(SIGALRM, on_alarm);
    vbuf = malloc(1 << 16);
    CHECK(vbuf != NULL);
    snprintf(base, sizeof base, "%s/base", tu_tmpdir("corrupt"));
    build_base();
    list_targets();

    /* the undamaged copy opens clean with everything */
    for (int i = 0; i < ntargets; i++)
        if (targets[i].type == F_LOG)
            wal_size = targets[i].size;
    CHECK(wal_size > (uint64_t)NWAL * WAL_VLEN);
    {
        damage d;
        memset(&d, 0, sizeof d);
        d.kind = D_FLIP; /* flip and flip back = no damage */
        snprintf(trial_desc, sizeof trial_desc, "undamaged copy");
        cur_target = &targets[0];
        snprintf(trial_dir, sizeof trial_dir, "%s-clean", base);
        copy_dir(base, trial_dir);
        kv_db *db = open_or_die(trial_dir);
        int got[NK], scan[2 * NK], scan_n, scan_err, st[NK];
        CHECK(read_all(db, got, scan, &scan_n, &scan_err) == 0);
        state_j(NWAL, st);
        const char *why = matches_state(st, got, scan, scan_n, scan_err);
        if (why)
            TRIAL_FAIL("undamaged store: %s", why);
        kv_snapinfo si;
        CHECK_OK(kv_named_snapshot_get(db, "corruption-test", &si));
        CHECK_OK(kv_close(db));
        tu_rmtree(trial_dir);
    }

    const char *an_sst = NULL, *a_manifest = NULL;
    for (int i = 0; i < ntargets; i++) {
        if (targets[i].type == F_SST && !an_sst)
            an_sst = targets[i].name;
        if (targets[i].type == F_MANIFEST)
            a_manifest = targets[i].name;
    }
    for (int i = 0; i < ntargets; i++) {
        const target *t = &targets[i];
        const char *other = t->type == F_SST ? a_manifest : an_sst;
        if (t->type == F_SST) { /* another table in place of this one */
            for (int j = 0; j < ntargets; j++)
                if (j != i && targets[j].type == F_SST)
                    other = targets[j].name;
        }
        run_set(t, other);
        if (t->type == F_LOG)
            test_salvage(t);
    }
    if (trial_failures) {
        fprintf(stderr,
                "test_corruption: %d trials failed (seed %" PRIu64 "); their copies are "
                "kept next to %s\n",
                trial_failures, tu_seed, base);
        return 1;
    }
    char root[700];
    snprintf(root, sizeof root, "%s", base);
    *strrchr(root, '/') = 0;
    tu_rmtree(root);
    free(vbuf);
    TU_DONE("test_corruption");
}
