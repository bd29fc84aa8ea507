/*
 * test_api.c -- the documented behaviour and errno of every call in engine/kv.h, through the
 * public header only.
 *
 * Covered: options and open/close (create_if_missing, error_if_exists, read_only -> -EROFS
 * and no file touched, a second open from another process -> -EBUSY), key and value limits
 * (empty key -EINVAL, KV_MAX_KEY_BYTES, 16 and 32 MiB values, one byte more -EFBIG), binary
 * keys with NUL bytes, batches (consecutive sequences, atomic apply, count/bytes/clear), TTL
 * judged at kv_readopts.time_ms and at a snapshot's own time, reads at a sequence and at
 * snapshots, -ESTALE below the history floor, named snapshots (list order, -EEXIST, -ENOENT,
 * survive reopen, pin old versions without a history window), kv_history newest first,
 * kv_seq_at_time / kv_time_of_seq at one-second resolution, iterators bounded by range and
 * prefix in both directions with direction changes, iterators pinned to their point in time,
 * flush and compact_range keeping data, checkpoint opening as an identical store of its own,
 * stats counters, and kv_verify on a clean store.
 *
 * Invariant kept by the test itself: every store lives in a fresh tu_tmpdir() and is removed
 * at the end; nothing here depends on engine internals or file names.
 */
#include "kv.h"
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

/* ------------------------------------------------------------------ helpers ---- */

static size_t dummy_len; /* for kv_get calls that want no value */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Sleeps until the wall clock is at least 50 ms into the next second. */
static void sleep_to_next_second(void)
{
    uint64_t t = now_ms();
    sleep_ms((unsigned)(1000 - t % 1000 + 50));
}

static char *xstrdup_path(const char *p)
{
    char *s = strdup(p);
    CHECK(s != NULL);
    return s;
}

static kv_db *open_store(const char *dir, const kv_options *o)
{
    kv_db *db = NULL;
    CHECK_OK(kv_open(dir, o, &db));
    CHECK(db != NULL);
    return db;
}

static void put_s(kv_db *db, const char *k, const char *v)
{
    CHECK_OK(kv_put(db, k, strlen(k), v, strlen(v), 0));
}

/* Checks that key (C string) reads as want (NULL = -ENOENT) under ro. */
static void expect_s(kv_db *db, const kv_readopts *ro, const char *k, const char *want)
{
    void *v = NULL;
    size_t vl = 0;
    int rc = kv_get(db, ro, k, strlen(k), &v, &vl, NULL);
    if (!want) {
        if (rc != -ENOENT)
            fprintf(stderr, "key '%s': want ENOENT, got rc %d (%.*s)\n", k, rc,
                    rc == 0 ? (int)vl : 0, rc == 0 ? (char *)v : "");
        CHECK_RC(rc, -ENOENT);
    } else {
        if (rc != 0)
            fprintf(stderr, "key '%s': want '%s', got rc %d\n", k, want, rc);
        CHECK_OK(rc);
        if (vl != strlen(want) || memcmp(v, want, vl) != 0)
            fprintf(stderr, "key '%s': want '%s', got '%.*s'\n", k, want, (int)vl, (char *)v);
        CHECK(vl == strlen(want) && memcmp(v, want, vl) == 0);
    }
    free(v);
}

static void fill_rand(uint8_t *p, size_t n, uint64_t s)
{
    uint64_t x = s * 0x9E3779B97F4A7C15ull + 1;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t r = x * 2685821657736338717ull;
        memcpy(p + i, &r, 8);
    }
    for (; i < n; i++)
        p[i] = (uint8_t)(i * 131 + s);
}

/* One key/value pair of a collected iteration. */
typedef struct kvpair {
    uint8_t *k, *v;
    size_t kl, vl;
} kvpair;

typedef struct kvlist {
    kvpair *a;
    size_t n, cap;
} kvlist;

static void list_add(kvlist *l, const void *k, size_t kl, const void *v, size_t vl)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->a = realloc(l->a, l->cap * sizeof *l->a);
        CHECK(l->a != NULL);
    }
    kvpair *p = &l->a[l->n++];
    p->k = malloc(kl + 1);
    p->v = malloc(vl + 1);
    CHECK(p->k && p->v);
    memcpy(p->k, k, kl);
    memcpy(p->v, v, vl);
    p->kl = kl;
    p->vl = vl;
}

static void list_free(kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->a[i].k);
        free(l->a[i].v);
    }
    free(l->a);
    memset(l, 0, sizeof *l);
}

/* Collects every visible pair of the store (forward iteration) under ro. */
static void collect_all(kv_db *db, const kv_readopts *ro, kvlist *out)
{
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    if (ro)
        io.ro = *ro;
    kv_iter *it = NULL;
    CHECK_OK(kv_iter_new(db, &io, &it));
    for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
        size_t kl, vl;
        const void *k = kv_iter_key(it, &kl);
        const void *v = kv_iter_value(it, &vl);
        list_add(out, k, kl, v, vl);
    }
    CHECK_OK(kv_iter_status(it));
    kv_iter_free(it);
}

static void lists_equal(const kvlist *a, const kvlist *b)
{
    if (a->n != b->n)
        fprintf(stderr, "iteration lengths differ: %zu vs %zu\n", a->n, b->n);
    CHECK(a->n == b->n);
    for (size_t i = 0; i < a->n; i++) {
        CHECK(a->a[i].kl == b->a[i].kl && memcmp(a->a[i].k, b->a[i].k, a->a[i].kl) == 0);
        CHECK(a->a[i].vl == b->a[i].vl && memcmp(a->a[i].v, b->a[i].v, a->a[i].vl) == 0);
    }
}

static int cmp_bytes(const void *a, size_t al, const void *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static void count_report(void *arg, const char *line)
{
    fprintf(stderr, "kv_verify: %s\n", line);
    (*(int *)arg)++;
}

/* kv_verify must find nothing on a clean store; prints what it reports otherwise. */
static int verify_clean(kv_db *db)
{
    int reports = 0;
    int rc = kv_verify(db, count_report, &reports);
    if (rc != 0)
        fprintf(stderr, "kv_verify returned %d (%s), %d reports\n", rc, kv_last_error(), reports);
    return rc == 0 && reports == 0;
}

/* ------------------------------------------------------ open / options / lock ---- */

static void test_open_options(void)
{
    const char *d = tu_tmpdir("api-open");
    char *base = xstrdup_path(d);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/store", base);
    kv_options o;
    kv_options_init(&o);

    /* create_if_missing = 0 on a missing directory */
    o.create_if_missing = 0;
    kv_db *db = NULL;
    CHECK_RC(kv_open(dir, &o, &db), -ENOENT);

    /* default creates */
    kv_options_init(&o);
    db = open_store(dir, &o);
    put_s(db, "hello", "world");
    CHECK_OK(kv_close(db));

    /* error_if_exists */
    o.error_if_exists = 1;
    db = NULL;
    CHECK_RC(kv_open(dir, &o, &db), -EEXIST);
    o.error_if_exists = 0;

    /* create_if_missing = 0 on an existing store works */
    o.create_if_missing = 0;
    db = open_store(dir, &o);
    expect_s(db, NULL, "hello", "world");
    CHECK_OK(kv_close(db));
    tu_rmtree(base);
    free(base);
}

/* Names and sizes of the files in dir, as one string (sorted). */
static char *dir_signature(const char *dir)
{
    DIR *dp = opendir(dir);
    CHECK(dp != NULL);
    char *names[512];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dp)) != NULL && n < 512) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || strcasestr(e->d_name, "lock"))
            continue;
        char p[1200];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        CHECK(stat(p, &st) == 0);
        char line[600];
        snprintf(line, sizeof line, "%s:%lld:%lld.%09ld\n", e->d_name, (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
        names[n++] = xstrdup_path(line);
    }
    closedir(dp);
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    size_t tot = 1;
    for (size_t i = 0; i < n; i++)
        tot += strlen(names[i]);
    char *s = malloc(tot);
    CHECK(s != NULL);
    s[0] = 0;
    for (size_t i = 0; i < n; i++) {
        strcat(s, names[i]);
        free(names[i]);
    }
    return s;
}

static void test_read_only(void)
{
    char *dir = xstrdup_path(tu_tmpdir("api-ro"));
    kv_options o;
    kv_options_init(&o);
    kv_db *db = open_store(dir, &o);
    put_s(db, "a", "1");
    CHECK_OK(kv_flush(db));
    put_s(db, "b", "2"); /* stays in the WAL */
    CHECK_OK(kv_named_snapshot_create(db, "snap", NULL));
    CHECK_OK(kv_close(db));

    char *sig0 = dir_signature(dir);
    o.read_only = 1;
    db = open_store(dir, &o);
    expect_s(db, NULL, "a", "1");
    expect_s(db, NULL, "b", "2");
    CHECK_RC(kv_put(db, "c", 1, "3", 1, 0), -EROFS);
    CHECK_RC(kv_put_ttl(db, "c", 1, "3", 1, now_ms() + 100000, 0), -EROFS);
    CHECK_RC(kv_delete(db, "a", 1, 0), -EROFS);
    kv_batch *b = kv_batch_new();
    CHECK(b != NULL);
    CHECK_OK(kv_batch_put(b, "d", 1, "4", 1));
    CHECK_RC(kv_write(db, b, 0, NULL), -EROFS);
    kv_batch_free(b);
    CHECK_RC(kv_named_snapshot_create(db, "other", NULL), -EROFS);
    CHECK_RC(kv_named_snapshot_delete(db, "snap"), -EROFS);
    kv_snapinfo si;
    CHECK_OK(kv_named_snapshot_get(db, "snap", &si));
    expect_s(db, NULL, "c", NULL);
    expect_s(db, NULL, "d", NULL);
    CHECK(verify_clean(db));
    CHECK_OK(kv_close(db));
    char *sig1 = dir_signature(dir);
    if (strcmp(sig0, sig1) != 0)
        fprintf(stderr, "read-only open changed the directory:\nbefore:\n%safter:\n%s", sig0, sig1);
    CHECK(strcmp(sig0, sig1) == 0);
    free(sig0);
    free(sig1);

    /* read_only on a missing store */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/nope", dir);
    db = NULL;
    CHECK(kv_open(missing, &o, &db) < 0);
    tu_rmtree(dir);
    free(dir);
}

/* A second kv_open of a directory held by another process fails -EBUSY. The child is forked
 * before this process opens the store (so it inherits no engine threads) and waits on a pipe. */
static int child_try_open(const char *dir, int go_fd)
{
    char c;
    if (read(go_fd, &c, 1) != 1)
        return 100;
    kv_options o;
    kv_options_init(&o);
    kv_db *db = NULL;
    int rc = kv_open(dir, &o, &db);
    if (rc == 0) {
        kv_close(db);
        return 0;
    }
    return rc == -EBUSY ? 1 : 2;
}

static int fork_open_probe(const char *dir, kv_db **parent_db, int parent_opens)
{
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        close(p[1]);
        _exit(child_try_open(dir, p[0]));
    }
    close(p[0]);
    if (parent_opens) {
        kv_options o;
        kv_options_init(&o);
        *parent_db = open_store(dir, &o);
    }
    CHECK(write(p[1], "g", 1) == 1);
    close(p[1]);
    int st = 0;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_lock(void)
{
    char *dir = xstrdup_path(tu_tmpdir("api-lock"));
    kv_db *db = NULL;
    int code = fork_open_probe(dir, &db, 1);
    if (code != 1)
        fprintf(stderr,
                "second open from another process: child code %d (0=opened, 2=other "
                "error), want -EBUSY\n",
                code);
    CHECK(code == 1);
    put_s(db, "x", "y");
    CHECK_OK(kv_close(db));
    /* released on close */
    code = fork_open_probe(dir, NULL, 0);
    CHECK(code == 0);
    tu_rmtree(dir);
    free(dir);
}

/* ----------------------------------------------------------- keys and values ---- */

static void test_limits(void)
{
    char *dir = xstrdup_path(tu_tmpdir("api-limits"));
    kv_options o;
    kv_options_init(&o);
    kv_db *db = open_store(dir, &o);

    /* empty key */
    CHECK_RC(kv_put(db, "", 0, "v", 1, 0), -EINVAL);
    CHECK_RC(kv_put_ttl(db, "", 0, "v", 1, now_ms() + 1000, 0), -EINVAL);
    CHECK_RC(kv_delete(db, "", 0, 0), -EINVAL);
    CHECK_RC(kv_get(db, NULL, "", 0, NULL, &dummy_len, NULL), -EINVAL);

    /* longest key works, one byte more does not */
    size_t kmax = KV_MAX_KEY_BYTES;
    uint8_t *bigkey = malloc(kmax + 1);
    CHECK(bigkey != NULL);
    fill_rand(bigkey, kmax + 1, 7);
    CHECK_OK(kv_put(db, bigkey, kmax, "kv", 2, 0));
    CHECK_RC(kv_put(db, bigkey, kmax + 1, "kv", 2, 0), -ENAMETOOLONG);
    CHECK_RC(kv_delete(db, bigkey, kmax + 1, 0), -ENAMETOOLONG);
    CHECK_RC(kv_get(db, NULL, bigkey, kmax + 1, NULL, &dummy_len, NULL), -ENAMETOOLONG);

    /* batches reject bad ops either when appended or when written */
    kv_batch *b = kv_batch_new();
    CHECK(b != NULL);
    int rc = kv_batch_put(b, "", 0, "v", 1);
    if (rc == 0)
        CHECK_RC(kv_write(db, b, 0, NULL), -EINVAL);
    else
        CHECK_RC(rc, -EINVAL);
    kv_batch_clear(b);
    rc = kv_batch_put(b, bigkey, kmax + 1, "v", 1);
    if (rc == 0)
        CHECK_RC(kv_write(db, b, 0, NULL), -ENAMETOOLONG);
    else
        CHECK_RC(rc, -ENAMETOOLONG);
    kv_batch_clear(b);

    /* 16 MiB and 32 MiB values, 32 MiB + 1 refused */
    size_t m16 = 16u << 20, m32 = KV_MAX_VALUE_BYTES;
    uint8_t *v16 = malloc(m16), *v32 = malloc(m32 + 1);
    CHECK(v16 && v32);
    fill_rand(v16, m16, 16);
    fill_rand(v32, m32 + 1, 32);
    CHECK_OK(kv_put(db, "v16", 3, v16, m16, 0));
    CHECK_OK(kv_put(db, "v32", 3, v32, m32, 0));
    CHECK_RC(kv_put(db, "v33", 3, v32, m32 + 1, 0), -EFBIG);
    rc = kv_batch_put(b, "v33", 3, v32, m32 + 1);
    if (rc == 0)
        CHECK_RC(kv_write(db, b, 0, NULL), -EFBIG);
    else
        CHECK_RC(rc, -EFBIG);
    kv_batch_free(b);

    for (int round = 0; round < 3; round++) {
        void *v = NULL;
        size_t vl = 0;
        kv_entry_info info;
        CHECK_OK(kv_get(db, NULL, "v16", 3, &v, &vl, &info));
        CHECK(vl == m16 && info.value_len == m16 && memcmp(v, v16, m16) == 0);
        free(v);
        v = NULL;
        CHECK_OK(kv_get(db, NULL, "v32", 3, &v, &vl, &info));
        CHECK(vl == m32 && info.value_len == m32 && memcmp(v, v32, m32) == 0);
        free(v);
        CHECK_RC(kv_get(db, NULL, "v33", 3, NULL, &dummy_len, NULL), -ENOENT);
        v = NULL;
        CHECK_OK(kv_get(db, NULL, bigkey, kmax, &v, &vl, NULL));
        CHECK(vl == 2 && memcmp(v, "kv", 2) == 0);
        free(v);
        if (round == 0) {
            CHECK_OK(kv_flush(db)); /* now from an SSTable */
        } else if (round == 1) {
            CHECK_OK(kv_close(db)); /* and after reopen */
            db = open_store(dir, &o);
        }
    }
    /* an iterator returns the big value whole */
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    io.prefix = "v3";
    io.prefix_len = 2;
    kv_iter *it = NULL;
    CHECK_OK(kv_iter_new(db, &io, &it));
    kv_iter_seek_first(it);
    CHECK(kv_iter_valid(it));
    size_t kl, vl;
    const void *k = kv_iter_key(it, &kl);
    const void *vv = kv_iter_value(it, &vl);
    CHECK(kl == 3 && memcmp(k, "v32", 3) == 0);
    CHECK(vl == m32 && memcmp(vv, v32, m32) == 0);
    kv_iter_next(it);
    CHECK(!kv_iter_valid(it));
    CHECK_OK(kv_iter_status(it));
    kv_iter_free(it);
    CHECK(verify_clean(db));
    CHECK_OK(kv_close(db));
    free(v16);
    free(v32);
    free(bigkey);
    tu_rmtree(dir);
    free(dir);
}

/* Binary keys: NUL bytes are ordinary bytes; a prefix sorts first. */
static void test_binary_keys(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    kv_db *db = open_store(dir, &o);
    static const struct {
        const char *k;
        size_t n;
    } keys[] = {{"\0", 1},    {"\0\0", 2}, {"a", 1},    {"a\0", 2},
                {"a\0\0", 3}, {"a\0b", 3}, {"\xff", 1}, {"\xff\0", 2}};
    size_t nk = sizeof keys / sizeof keys[0];
    for (size_t i = 0; i < nk; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "bin%zu", i);
        CHECK_OK(kv_put(db, keys[i].k, keys[i].n, v, (size_t)vl, 0));
    }
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nk; i++) {
            char want[32];
            int wl = snprintf(want, sizeof want, "bin%zu", i);
            void *v = NULL;
            size_t vl = 0;
            CHECK_OK(kv_get(db, NULL, keys[i].k, keys[i].n, &v, &vl, NULL));
            CHECK(vl == (size_t)wl && memcmp(v, want, vl) == 0);
            free(v);
        }
        CHECK_RC(kv_get(db, NULL, "a\0a", 3, NULL, &dummy_len, NULL), -ENOENT);
        CHECK_RC(kv_get(db, NULL, "\0\0\0", 3, NULL, &dummy_len, NULL), -ENOENT);
        kvlist l = {0};
        collect_all(db, NULL, &l);
        CHECK(l.n == nk);
        for (size_t i = 0; i < nk; i++)
            CHECK(l.a[i].kl == keys[i].n && memcmp(l.a[i].k, keys[i].k, keys[i].n) == 0);
        list_free(&l);
        CHECK_OK(kv_flush(db));
    }
    for (size_t i = 0; i < nk; i++)
        CHECK_OK(kv_delete(db, keys[i].k, keys[i].n, 0));
    for (size_t i = 0; i < nk; i++)
        CHECK_RC(kv_get(db, NULL, keys[i].k, keys[i].n, NULL, &dummy_len, NULL), -ENOENT);
    CHECK_OK(kv_close(db));
}

/* ------------------------------------------------------- puts, gets, batches ---- */

static void test_basic_rw(kv_db *db)
{
    expect_s(db, NULL, "missing", NULL);
    uint64_t s0 = kv_last_seq(db);
    put_s(db, "k1", "v1");
    uint64_t s1 = kv_last_seq(db);
    CHECK(s1 > s0);
    kv_entry_info info;
    memset(&info, 0xab, sizeof info);
    size_t vl = 99;
    /* value not wanted: val == NULL */
    CHECK_OK(kv_get(db, NULL, "k1", 2, NULL, &vl, &info));
    CHECK(vl == 2 && info.value_len == 2 && info.seq == s1 && info.expire_at_ms == 0);
    put_s(db, "k1", "v1b");
    uint64_t s2 = kv_last_seq(db);
    CHECK(s2 > s1);
    expect_s(db, NULL, "k1", "v1b");
    /* empty value is a value, not a deletion */
    CHECK_OK(kv_put(db, "empty", 5, "", 0, 0));
    void *v = NULL;
    CHECK_OK(kv_get(db, NULL, "empty", 5, &v, &vl, &info));
    CHECK(vl == 0 && info.value_len == 0);
    free(v);
    CHECK_OK(kv_delete(db, "k1", 2, 0));
    uint64_t s3 = kv_last_seq(db);
    CHECK(s3 > s2);
    expect_s(db, NULL, "k1", NULL);
    /* deleting a missing key is fine */
    CHECK_OK(kv_delete(db, "never", 5, 0));
    /* reads at an older sequence (history window is on in this store) */
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.seq = s1;
    expect_s(db, &ro, "k1", "v1");
    ro.seq = s2;
    expect_s(db, &ro, "k1", "v1b");
    ro.seq = s3;
    expect_s(db, &ro, "k1", NULL);
    ro.seq = s0;
    expect_s(db, &ro, "k1", NULL);
    /* sync flags */
    CHECK_OK(kv_put(db, "s", 1, "1", 1, KV_WRITE_SYNC));
    CHECK_OK(kv_put(db, "s", 1, "2", 1, KV_WRITE_NOSYNC));
    CHECK_OK(kv_sync(db));
    expect_s(db, NULL, "s", "2");
}

static void test_batch(kv_db *db)
{
    kv_batch *b = kv_batch_new();
    CHECK(b != NULL);
    CHECK(kv_batch_count(b) == 0);
    size_t b0 = kv_batch_bytes(b);
    CHECK_OK(kv_batch_put(b, "b1", 2, "x1", 2));
    CHECK(kv_batch_count(b) == 1);
    CHECK(kv_batch_bytes(b) > b0);
    size_t b1 = kv_batch_bytes(b);
    CHECK_OK(kv_batch_put_ttl(b, "b2", 2, "x2", 2, now_ms() + 3600000));
    CHECK_OK(kv_batch_delete(b, "b3", 2));
    CHECK_OK(kv_batch_put(b, "b1", 2, "x1-again", 8)); /* same key twice: last wins */
    CHECK(kv_batch_count(b) == 4);
    CHECK(kv_batch_bytes(b) > b1);
    put_s(db, "b3", "gone-soon");
    uint64_t before = kv_last_seq(db);
    uint64_t seq = 0;
    CHECK_OK(kv_write(db, b, 0, &seq));
    CHECK(seq == before + 4);
    CHECK(kv_last_seq(db) == seq);
    expect_s(db, NULL, "b1", "x1-again");
    expect_s(db, NULL, "b2", "x2");
    expect_s(db, NULL, "b3", NULL);
    kv_entry_info info;
    CHECK_OK(kv_get(db, NULL, "b1", 2, NULL, &dummy_len, &info));
    CHECK(info.seq == seq);
    CHECK_OK(kv_get(db, NULL, "b2", 2, NULL, &dummy_len, &info));
    CHECK(info.seq == seq - 2);
    CHECK(info.expire_at_ms > 0);
    /* each op of the batch has its own sequence, in order */
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.seq = seq - 3;
    expect_s(db, &ro, "b1", "x1");
    expect_s(db, &ro, "b2", NULL);
    expect_s(db, &ro, "b3", "gone-soon");
    ro.seq = seq - 1;
    expect_s(db, &ro, "b1", "x1");
    expect_s(db, &ro, "b2", "x2");
    expect_s(db, &ro, "b3", NULL);

    kv_batch_clear(b);
    CHECK(kv_batch_count(b) == 0);
    CHECK(kv_batch_bytes(b) == b0);
    /* the batch is reusable; NULL seq allowed */
    CHECK_OK(kv_batch_put(b, "b4", 2, "x4", 2));
    CHECK_OK(kv_write(db, b, KV_WRITE_SYNC, NULL));
    expect_s(db, NULL, "b4", "x4");
    /* a batch with an invalid op applies nothing */
    kv_batch_clear(b);
    CHECK_OK(kv_batch_put(b, "b5", 2, "x5", 2));
    int rc = kv_batch_put(b, "", 0, "bad", 3);
    if (rc == 0) {
        uint64_t s_before = kv_last_seq(db);
        CHECK_RC(kv_write(db, b, 0, NULL), -EINVAL);
        CHECK(kv_last_seq(db) == s_before);
        expect_s(db, NULL, "b5", NULL);
    }
    kv_batch_free(b);
}

/* ---------------------------------------------------------------------- TTL ---- */

static void test_ttl(kv_db *db)
{
    uint64_t t = now_ms();
    uint64_t e = t + 600000;
    CHECK_OK(kv_put_ttl(db, "t1", 2, "live", 4, e, 0));
    kv_entry_info info;
    CHECK_OK(kv_get(db, NULL, "t1", 2, NULL, &dummy_len, &info));
    CHECK(info.expire_at_ms == e);
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.time_ms = e - 1;
    expect_s(db, &ro, "t1", "live");
    ro.time_ms = e; /* expired iff expire_at_ms <= T */
    expect_s(db, &ro, "t1", NULL);
    ro.time_ms = e + 100000;
    expect_s(db, &ro, "t1", NULL);

    /* already expired */
    CHECK_OK(kv_put_ttl(db, "t2", 2, "dead", 4, t - 1000, 0));
    expect_s(db, NULL, "t2", NULL);
    ro.time_ms = t - 1001;
    expect_s(db, &ro, "t2", "dead");

    /* an expired version hides the older one */
    put_s(db, "t3", "old");
    uint64_t s_old = kv_last_seq(db);
    CHECK_OK(kv_put_ttl(db, "t3", 2, "new", 3, e, 0));
    ro.time_ms = e;
    expect_s(db, &ro, "t3", NULL);
    ro.time_ms = e - 1;
    expect_s(db, &ro, "t3", "new");
    ro.seq = s_old;
    ro.time_ms = e;
    expect_s(db, &ro, "t3", "old");
    memset(&ro, 0, sizeof ro);

    /* iterators judge expiry at their time_ms */
    for (int pass = 0; pass < 2; pass++) {
        kv_iter_opts io;
        memset(&io, 0, sizeof io);
        io.prefix = "t";
        io.prefix_len = 1;
        io.ro.time_ms = e;
        kv_iter *it = NULL;
        CHECK_OK(kv_iter_new(db, &io, &it));
        kv_iter_seek_first(it);
        CHECK(!kv_iter_valid(it)); /* t1, t2, t3 all expired at e */
        CHECK_OK(kv_iter_status(it));
        kv_iter_free(it);
        io.ro.time_ms = e - 1;
        CHECK_OK(kv_iter_new(db, &io, &it));
        int n = 0;
        for (kv_iter_seek_first(it); kv_iter_valid(it); kv_iter_next(it)) {
            size_t kl;
            const char *k = kv_iter_key(it, &kl);
            kv_iter_info(it, &info);
            CHECK(kl == 2 && (k[1] == '1' || k[1] == '3'));
            CHECK(info.expire_at_ms == e);
            n++;
        }
        CHECK(n == 2);
        kv_iter_free(it);
        CHECK_OK(kv_flush(db));
    }

    /* a snapshot judges expiry at its own time when time_ms is 0 */
    uint64_t e2 = now_ms() + 1200;
    CHECK_OK(kv_put_ttl(db, "t4", 2, "brief", 5, e2, 0));
    kv_snapshot *snap = NULL;
    uint64_t tb = now_ms();
    CHECK_OK(kv_snapshot_acquire(db, 0, &snap));
    uint64_t ta = now_ms();
    CHECK(kv_snapshot_seq(snap) == kv_last_seq(db));
    CHECK(kv_snapshot_time_ms(snap) + 1000 >= tb && kv_snapshot_time_ms(snap) <= ta + 1000);
    while (now_ms() <= e2 + 20)
        sleep_ms(100);
    expect_s(db, NULL, "t4", NULL);
    ro.snapshot = snap;
    expect_s(db, &ro, "t4", "brief");
    ro.time_ms = e2;
    expect_s(db, &ro, "t4", NULL);
    kv_snapshot_release(db, snap);
}

/* -------------------------------------------------------------- iterators ---- */

static const char *const iter_keys[] = {"a", "a\0",   "a\0\0", "a\0b", "ab", "abc",  "abd",
                                        "b", "b\x01", "ba",    "c",    "cz", "\xff", "\xff\xff"};
static const size_t iter_klen[] = {1, 2, 3, 3, 2, 3, 3, 1, 2, 2, 1, 2, 1, 2};
#define NITER_KEYS (sizeof iter_klen / sizeof iter_klen[0])

static int iter_visible(size_t i, const kv_iter_opts *io, const int *present)
{
    const char *k = iter_keys[i];
    size_t kl = iter_klen[i];
    if (!present[i])
        return 0;
    if (io->lower && cmp_bytes(k, kl, io->lower, io->lower_len) < 0)
        return 0;
    if (io->upper && cmp_bytes(k, kl, io->upper, io->upper_len) >= 0)
        return 0;
    if (io->prefix && (kl < io->prefix_len || memcmp(k, io->prefix, io->prefix_len) != 0))
        return 0;
    return 1;
}

static void check_at(kv_iter *it, int want_idx, const char *what)
{
    if (want_idx < 0) {
        if (kv_iter_valid(it)) {
            size_t kl;
            const char *k = kv_iter_key(it, &kl);
            fprintf(stderr, "%s: want end, got key len %zu first byte %d\n", what, kl,
                    kl ? (unsigned char)k[0] : -1);
        }
        CHECK(!kv_iter_valid(it));
        CHECK_OK(kv_iter_status(it));
        return;
    }
    if (!kv_iter_valid(it))
        fprintf(stderr, "%s: want key #%d, iterator ended (status %d)\n", what, want_idx,
                kv_iter_status(it));
    CHECK(kv_iter_valid(it));
    size_t kl, vl;
    const void *k = kv_iter_key(it, &kl);
    const void *v = kv_iter_value(it, &vl);
    if (!(kl == iter_klen[want_idx] && memcmp(k, iter_keys[want_idx], kl) == 0))
        fprintf(stderr, "%s: want key #%d\n", what, want_idx);
    CHECK(kl == iter_klen[want_idx] && memcmp(k, iter_keys[want_idx], kl) == 0);
    char want[16];
    int wl = snprintf(want, sizeof want, "iv%d", want_idx);
    CHECK(vl == (size_t)wl && memcmp(v, want, vl) == 0);
}

/* Walks io forward, backward, and by seeks with direction changes; compares to the model. */
static void check_iter_bounds(kv_db *db, const kv_iter_opts *io, const int *present)
{
    int exp[NITER_KEYS];
    int n = 0;
    for (size_t i = 0; i < NITER_KEYS; i++)
        if (iter_visible(i, io, present))
            exp[n++] = (int)i;
    kv_iter *it = NULL;
    CHECK_OK(kv_iter_new(db, io, &it));
    kv_iter_seek_first(it);
    for (int i = 0; i < n; i++) {
        check_at(it, exp[i], "forward");
        kv_iter_next(it);
    }
    check_at(it, -1, "forward end");
    kv_iter_seek_last(it);
    for (int i = n - 1; i >= 0; i--) {
        check_at(it, exp[i], "backward");
        kv_iter_prev(it);
    }
    check_at(it, -1, "backward end");
    kv_iter_seek_first(it);
    kv_iter_prev(it);
    check_at(it, -1, "prev of first");
    kv_iter_seek_last(it);
    kv_iter_next(it);
    check_at(it, -1, "next of last");
    /* seek to every candidate key (present or not), then step both ways */
    for (size_t s = 0; s < NITER_KEYS; s++) {
        int j = 0;
        while (j < n &&
               cmp_bytes(iter_keys[exp[j]], iter_klen[exp[j]], iter_keys[s], iter_klen[s]) < 0)
            j++;
        kv_iter_seek(it, iter_keys[s], iter_klen[s]);
        check_at(it, j < n ? exp[j] : -1, "seek");
        if (j < n) {
            kv_iter_next(it);
            check_at(it, j + 1 < n ? exp[j + 1] : -1, "seek+next");
            if (j + 1 < n) { /* stepping back from the end is not defined by kv.h */
                kv_iter_prev(it);
                check_at(it, exp[j], "seek+next+prev");
            } else {
                kv_iter_seek(it, iter_keys[s], iter_klen[s]);
            }
            kv_iter_prev(it);
            check_at(it, j > 0 ? exp[j - 1] : -1, "seek+prev");
            if (j > 0) {
                kv_iter_next(it);
                check_at(it, exp[j], "seek+prev+next");
            }
        }
    }
    /* seek before everything and past everything */
    kv_iter_seek(it, "", 0);
    check_at(it, n ? exp[0] : -1, "seek empty");
    kv_iter_seek(it, "\xff\xff\xff", 3);
    check_at(it, -1, "seek past end");
    kv_iter_free(it);
}

static void iter_bound_cases(kv_db *db, const int *present, const kv_readopts *ro)
{
    static const struct {
        const char *lo, *hi, *pre;
        size_t lol, hil, prel;
    } cases[] = {
        {NULL, NULL, NULL, 0, 0, 0},      {"a\0", NULL, NULL, 2, 0, 0},
        {NULL, "ab", NULL, 0, 2, 0},      {"a\0", "ab", NULL, 2, 2, 0},
        {"a\0a", "b\x01", NULL, 3, 2, 0}, {"abc", "abc", NULL, 3, 3, 0}, /* empty range */
        {"zz", NULL, NULL, 2, 0, 0},                                     /* nothing at or above */
        {NULL, NULL, "a", 0, 0, 1},       {NULL, NULL, "a\0", 0, 0, 2},
        {NULL, NULL, "ab", 0, 0, 2},      {NULL, NULL, "b", 0, 0, 1},
        {NULL, NULL, "\xff", 0, 0, 1},  /* prefix with no successor byte */
        {NULL, NULL, "q", 0, 0, 1},     /* prefix matching nothing */
        {"a\0\0", "abd", "a", 3, 3, 1}, /* prefix and range together */
        {"0", "zz", "c", 1, 2, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        kv_iter_opts io;
        memset(&io, 0, sizeof io);
        if (ro)
            io.ro = *ro;
        io.lower = cases[c].lo;
        io.lower_len = cases[c].lol;
        io.upper = cases[c].hi;
        io.upper_len = cases[c].hil;
        io.prefix = cases[c].pre;
        io.prefix_len = cases[c].prel;
        check_iter_bounds(db, &io, present);
    }
}

static void test_iterators(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 64 << 10;
    kv_db *db = open_store(dir, &o);
    int present[NITER_KEYS];
    /* even keys to an SSTable, odd keys in the memtable; then some deletions on top */
    for (int phase = 0; phase < 2; phase++) {
        for (size_t i = 0; i < NITER_KEYS; i++) {
            if ((int)(i % 2) != phase)
                continue;
            char v[16];
            int vl = snprintf(v, sizeof v, "iv%zu", i);
            CHECK_OK(kv_put(db, iter_keys[i], iter_klen[i], v, (size_t)vl, 0));
            present[i] = 1;
        }
        if (phase == 0) {
            for (size_t i = 0; i < NITER_KEYS; i++)
                present[i] = i % 2 == 0;
            iter_bound_cases(db, present, NULL);
            CHECK_OK(kv_flush(db));
            iter_bound_cases(db, present, NULL);
        }
    }
    iter_bound_cases(db, present, NULL);

    /* a snapshot before deletions, then deletions and overwrites */
    kv_snapshot *snap = NULL;
    CHECK_OK(kv_snapshot_acquire(db, 0, &snap));
    int snap_present[NITER_KEYS];
    memcpy(snap_present, present, sizeof present);
    static const size_t dels[] = {0, 3, 6, 9, 13};
    for (size_t i = 0; i < sizeof dels / sizeof dels[0]; i++) {
        CHECK_OK(kv_delete(db, iter_keys[dels[i]], iter_klen[dels[i]], 0));
        present[dels[i]] = 0;
    }
    /* and an expired TTL entry that iterators must skip (a key not in the model) */
    CHECK_OK(kv_put_ttl(db, "abcc", 4, "x", 1, 1000, 0));
    /* an iterator created now is a point in time: later writes are invisible */
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    kv_iter *pinned = NULL;
    CHECK_OK(kv_iter_new(db, &io, &pinned));
    iter_bound_cases(db, present, NULL);
    CHECK_OK(kv_flush(db));
    iter_bound_cases(db, present, NULL);
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.snapshot = snap;
    iter_bound_cases(db, snap_present, &ro);

    /* an iterator at the snapshot stays unaffected by later writes, flushes, compactions */
    io.ro.snapshot = snap;
    kv_iter *at_snap = NULL;
    CHECK_OK(kv_iter_new(db, &io, &at_snap));
    for (size_t i = 0; i < NITER_KEYS; i++)
        CHECK_OK(kv_put(db, iter_keys[i], iter_klen[i], "overwritten", 11, 0));
    CHECK_OK(kv_put(db, "aa", 2, "new", 3, 0));
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    int n = 0;
    for (kv_iter_seek_first(at_snap); kv_iter_valid(at_snap); kv_iter_next(at_snap)) {
        while (n < (int)NITER_KEYS && !snap_present[n])
            n++;
        CHECK(n < (int)NITER_KEYS);
        check_at(at_snap, n, "iterator at snapshot after writes");
        n++;
    }
    CHECK_OK(kv_iter_status(at_snap));
    while (n < (int)NITER_KEYS && !snap_present[n])
        n++;
    CHECK(n == (int)NITER_KEYS);
    kv_iter_free(at_snap);
    n = 0;
    for (kv_iter_seek_first(pinned); kv_iter_valid(pinned); kv_iter_next(pinned)) {
        while (n < (int)NITER_KEYS && !present[n])
            n++;
        CHECK(n < (int)NITER_KEYS);
        check_at(pinned, n, "iterator pinned at creation after writes");
        n++;
    }
    CHECK_OK(kv_iter_status(pinned));
    while (n < (int)NITER_KEYS && !present[n])
        n++;
    CHECK(n == (int)NITER_KEYS);
    kv_iter_free(pinned);
    /* after compaction, the snapshot still reads the same */
    iter_bound_cases(db, snap_present, &ro);
    kv_snapshot_release(db, snap);
    CHECK_OK(kv_close(db));
}

/* ------------------------------------------------- snapshots, history, time ---- */

static void test_snapshots(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.history_ms = 0; /* no history window: only snapshots retain old versions */
    kv_db *db = open_store(dir, &o);
    for (int i = 0; i < 10; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        put_s(db, "sk", v);
    }
    CHECK(kv_oldest_readable_seq(db) <= kv_last_seq(db));
    kv_snapshot *s = NULL;
    CHECK_RC(kv_snapshot_acquire(db, 1, &s), -ESTALE);
    uint64_t sq = 0;
    CHECK_RC(kv_seq_at_time(db, 1000, &sq), -ESTALE);

    /* named snapshots */
    kv_snapinfo info;
    uint64_t tb = now_ms();
    CHECK_OK(kv_named_snapshot_create(db, "m-snap", &info));
    CHECK(info.seq == kv_last_seq(db));
    CHECK(strcmp(info.name, "m-snap") == 0);
    CHECK(info.time_ms + 1000 >= tb && info.time_ms <= now_ms() + 1000);
    uint64_t named_seq = info.seq;
    CHECK_RC(kv_named_snapshot_create(db, "m-snap", NULL), -EEXIST);
    char longname[KV_SNAPSHOT_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK_RC(kv_named_snapshot_create(db, longname, NULL), -ENAMETOOLONG);
    longname[KV_SNAPSHOT_NAME_MAX] = 0; /* exactly the maximum */
    CHECK_OK(kv_named_snapshot_create(db, longname, NULL));
    CHECK_RC(kv_named_snapshot_get(db, "nope", &info), -ENOENT);
    CHECK_RC(kv_named_snapshot_delete(db, "nope"), -ENOENT);
    put_s(db, "sk", "after");
    CHECK_OK(kv_named_snapshot_create(db, "a-snap", NULL));
    CHECK_OK(kv_named_snapshot_create(db, "z-snap", NULL));
    put_s(db, "sk", "later");
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));

    for (int pass = 0; pass < 2; pass++) {
        kv_snapinfo *list = NULL;
        size_t n = 0;
        CHECK_OK(kv_named_snapshot_list(db, &list, &n));
        CHECK(n == 4);
        CHECK(strcmp(list[0].name, "a-snap") == 0);
        CHECK(strcmp(list[1].name, "m-snap") == 0);
        CHECK(strcmp(list[2].name, longname) == 0);
        CHECK(strcmp(list[3].name, "z-snap") == 0);
        CHECK(list[1].seq == named_seq && list[0].seq == named_seq + 1);
        CHECK(list[3].seq == list[0].seq);
        free(list);
        CHECK_OK(kv_named_snapshot_get(db, "m-snap", &info));
        CHECK(info.seq == named_seq);
        kv_readopts ro;
        memset(&ro, 0, sizeof ro);
        ro.seq = named_seq;
        expect_s(db, &ro, "sk", "v9");
        ro.seq = named_seq + 1;
        expect_s(db, &ro, "sk", "after");
        CHECK_OK(kv_snapshot_acquire(db, named_seq, &s));
        CHECK(kv_snapshot_seq(s) == named_seq);
        ro.seq = 0;
        ro.snapshot = s;
        expect_s(db, &ro, "sk", "v9");
        kv_snapshot_release(db, s);
        expect_s(db, NULL, "sk", "later");
        kv_stats st;
        CHECK_OK(kv_get_stats(db, &st));
        CHECK(st.named_snapshots == 4);
        /* survives reopen */
        CHECK_OK(kv_close(db));
        db = open_store(dir, &o);
    }
    CHECK_OK(kv_named_snapshot_delete(db, "m-snap"));
    CHECK_RC(kv_named_snapshot_get(db, "m-snap", &info), -ENOENT);
    CHECK_RC(kv_named_snapshot_delete(db, "m-snap"), -ENOENT);
    CHECK_OK(kv_named_snapshot_delete(db, longname));
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    kv_snapinfo *list = NULL;
    size_t n = 0;
    CHECK_OK(kv_named_snapshot_list(db, &list, &n));
    CHECK(n == 2 && strcmp(list[0].name, "a-snap") == 0 && strcmp(list[1].name, "z-snap") == 0);
    free(list);

    /* in-memory snapshot pins its version through flush and compaction */
    put_s(db, "pin", "one");
    CHECK_OK(kv_snapshot_acquire(db, 0, &s));
    put_s(db, "pin", "two");
    CHECK_OK(kv_delete(db, "pin", 3, 0));
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.snapshot = s;
    expect_s(db, &ro, "pin", "one");
    expect_s(db, NULL, "pin", NULL);
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    CHECK(st.live_snapshots >= 1);
    kv_snapshot_release(db, s);
    CHECK_OK(kv_get_stats(db, &st));
    CHECK(st.live_snapshots == 0);
    CHECK(verify_clean(db));
    CHECK_OK(kv_close(db));
}

static void test_history_and_time(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.history_ms = 3600u * 1000u;
    kv_db *db = open_store(dir, &o);
    uint64_t e = now_ms() + 7200000;
    put_s(db, "h", "one");
    uint64_t s1 = kv_last_seq(db);
    put_s(db, "h", "two!");
    uint64_t s2 = kv_last_seq(db);
    CHECK_OK(kv_delete(db, "h", 1, 0));
    uint64_t s3 = kv_last_seq(db);
    CHECK_OK(kv_put_ttl(db, "h", 1, "three", 5, e, 0));
    uint64_t s4 = kv_last_seq(db);
    put_s(db, "h2", "other key");
    for (int pass = 0; pass < 3; pass++) {
        kv_version *vs = NULL;
        size_t n = 0;
        CHECK_OK(kv_history(db, "h", 1, &vs, &n));
        CHECK(n == 4);
        CHECK(vs[0].seq == s4 && !vs[0].deleted && vs[0].size == 5 && vs[0].expire_at_ms == e);
        CHECK(vs[1].seq == s3 && vs[1].deleted && vs[1].size == 0);
        CHECK(vs[2].seq == s2 && !vs[2].deleted && vs[2].size == 4 && vs[2].expire_at_ms == 0);
        CHECK(vs[3].seq == s1 && !vs[3].deleted && vs[3].size == 3);
        for (size_t i = 0; i + 1 < n; i++)
            CHECK(vs[i].time_ms >= vs[i + 1].time_ms);
        free(vs);
        vs = NULL;
        CHECK_OK(kv_history(db, "nokey", 5, &vs, &n));
        CHECK(n == 0);
        free(vs);
        kv_readopts ro;
        memset(&ro, 0, sizeof ro);
        ro.seq = s1;
        expect_s(db, &ro, "h", "one");
        ro.seq = s2;
        expect_s(db, &ro, "h", "two!");
        ro.seq = s3;
        expect_s(db, &ro, "h", NULL);
        expect_s(db, NULL, "h", "three");
        if (pass == 0) {
            CHECK_OK(kv_flush(db));
            CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
        } else {
            CHECK_OK(kv_close(db));
            db = open_store(dir, &o);
        }
    }

    /* kv_seq_at_time / kv_time_of_seq at one-second resolution */
    sleep_to_next_second();
    uint64_t ta0 = now_ms();
    put_s(db, "tm", "a");
    uint64_t sa = kv_last_seq(db);
    uint64_t ta1 = now_ms();
    sleep_to_next_second();
    uint64_t tmid = now_ms();
    sleep_to_next_second();
    uint64_t tb0 = now_ms();
    put_s(db, "tm", "b");
    uint64_t sb = kv_last_seq(db);
    uint64_t tt = 0;
    CHECK_OK(kv_time_of_seq(db, sa, &tt));
    CHECK(tt / 1000 >= ta0 / 1000 && tt / 1000 <= ta1 / 1000);
    CHECK_OK(kv_time_of_seq(db, sb, &tt));
    CHECK(tt / 1000 >= tb0 / 1000);
    uint64_t q = 0;
    /* a time in the same second as the commit includes it, even ms before it */
    CHECK_OK(kv_seq_at_time(db, (ta0 / 1000) * 1000, &q));
    CHECK(q >= sa && q < sb);
    CHECK_OK(kv_seq_at_time(db, tmid, &q));
    CHECK(q >= sa && q < sb);
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.seq = q;
    expect_s(db, &ro, "tm", "a");
    CHECK_OK(kv_seq_at_time(db, now_ms(), &q));
    CHECK(q >= sb);
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    CHECK_OK(kv_seq_at_time(db, tmid, &q));
    CHECK(q >= sa && q < sb);
    CHECK(kv_oldest_readable_seq(db) <= s1);
    CHECK_OK(kv_close(db));
}

/* ---------------------------------------------- maintenance, stats, checkpoint ---- */

#define NMAINT 2000 /* 2000 * ~210 bytes: several memtables of 256 KiB */

static void test_maintenance(const char *dir, const char *cpdir)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 256 << 10;
    o.table_bytes = 128 << 10;
    kv_db *db = open_store(dir, &o);
    kv_stats st0, st1;
    CHECK_OK(kv_get_stats(db, &st0));
    char k[32], v[300];
    for (int i = 0; i < NMAINT; i++) {
        snprintf(k, sizeof k, "m%06d", (i * 7919) % NMAINT);
        int vl = snprintf(v, sizeof v, "value-%d-", i);
        memset(v + vl, 'a' + i % 26, 200);
        CHECK_OK(kv_put(db, k, strlen(k), v, (size_t)vl + 200, 0));
    }
    for (int i = 0; i < NMAINT; i += 3) {
        snprintf(k, sizeof k, "m%06d", i);
        CHECK_OK(kv_delete(db, k, strlen(k), 0));
    }
    kv_batch *b = kv_batch_new();
    CHECK(b != NULL);
    CHECK_OK(kv_batch_put(b, "mb1", 3, "1", 1));
    CHECK_OK(kv_batch_put(b, "mb2", 3, "2", 1));
    CHECK_OK(kv_write(db, b, 0, NULL));
    kv_batch_free(b);
    kvlist before = {0};
    collect_all(db, NULL, &before);
    CHECK(before.n == NMAINT - (NMAINT + 2) / 3 + 2);
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, "m000100", 7, "m000900", 7));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    kvlist after = {0};
    collect_all(db, NULL, &after);
    lists_equal(&before, &after);
    list_free(&after);
    for (int i = 0; i < NMAINT; i += 100) {
        snprintf(k, sizeof k, "m%06d", i);
        CHECK_RC(kv_get(db, NULL, k, strlen(k), NULL, &dummy_len, NULL), i % 3 == 0 ? -ENOENT : 0);
    }
    CHECK_OK(kv_get_stats(db, &st1));
    CHECK(st1.puts >= st0.puts + NMAINT);
    CHECK(st1.deletes >= st0.deletes + (NMAINT + 2) / 3);
    CHECK(st1.gets >= st0.gets + NMAINT / 100);
    CHECK(st1.batches >= st0.batches + 1);
    CHECK(st1.flushes >= st0.flushes + 1);
    CHECK(st1.compactions >= st0.compactions + 1);
    CHECK(st1.compaction_bytes_read > 0 && st1.compaction_bytes_written > 0);
    CHECK(st1.wal_bytes > st0.wal_bytes);
    CHECK(st1.last_seq == kv_last_seq(db));
    uint64_t files = 0, bytes = 0;
    for (int l = 0; l < KV_MAX_LEVELS; l++) {
        files += st1.level_files[l];
        bytes += st1.level_bytes[l];
    }
    CHECK(files >= 1 && bytes > 0);
    CHECK(st1.sticky_error == 0);
    CHECK(st1.oldest_readable_seq <= st1.last_seq);

    /* verify: clean store, reporter never called */
    int reports = 0;
    CHECK(kv_verify(db, count_report, &reports) == 0);
    CHECK(reports == 0);

    /* checkpoint: a store of its own with identical contents */
    CHECK_OK(kv_named_snapshot_create(db, "cp-snap", NULL));
    put_s(db, "in-wal", "only in the log");
    CHECK_OK(kv_checkpoint(db, cpdir));
    CHECK(kv_checkpoint(db, cpdir) < 0); /* target exists */
    put_s(db, "after-cp", "not in the checkpoint");
    kv_db *cp = open_store(cpdir, &o);
    kvlist a = {0}, c = {0};
    collect_all(cp, NULL, &c);
    CHECK_OK(kv_delete(db, "after-cp", 8, 0));
    collect_all(db, NULL, &a);
    lists_equal(&a, &c);
    list_free(&a);
    list_free(&c);
    kv_snapinfo si;
    CHECK_OK(kv_named_snapshot_get(cp, "cp-snap", &si));
    CHECK(verify_clean(cp));
    /* the two stores are independent */
    put_s(cp, "cp-only", "x");
    expect_s(db, NULL, "cp-only", NULL);
    put_s(db, "db-only", "y");
    expect_s(cp, NULL, "db-only", NULL);
    CHECK_OK(kv_close(cp));
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    CHECK_OK(kv_delete(db, "db-only", 7, 0));
    CHECK_OK(kv_delete(db, "in-wal", 6, 0));
    kvlist again = {0};
    collect_all(db, NULL, &again);
    lists_equal(&before, &again);
    list_free(&again);
    list_free(&before);
    CHECK_RC(kv_verify(db, count_report, &reports), 0);
    CHECK(reports == 0);
    CHECK_OK(kv_close(db));
}

/* The memtable is flushed when it reaches opts.memtable_bytes, not before. */
static void test_memtable_budget(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 256 << 10;
    kv_db *db = open_store(dir, &o);
    char k[32], v[100];
    memset(v, 'm', sizeof v);
    for (int i = 0; i < 200; i++) { /* about 25 KiB: a tenth of the budget */
        snprintf(k, sizeof k, "budget%04d", i);
        CHECK_OK(kv_put(db, k, strlen(k), v, sizeof v, 0));
    }
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    if (st.flushes != 0 || st.write_stalls != 0)
        fprintf(stderr,
                "200 puts of ~110 bytes with memtable_bytes = 256 KiB: %" PRIu64
                " flushes, %" PRIu64 " write stalls, memtable_bytes stat %" PRIu64 "\n",
                st.flushes, st.write_stalls, st.memtable_bytes);
    CHECK(st.flushes == 0);
    CHECK(st.write_stalls == 0);
    uint8_t *big = malloc(64 << 10);
    CHECK(big != NULL);
    fill_rand(big, 64 << 10, 3);
    for (int i = 0; i < 12; i++) { /* 768 KiB: well past the budget */
        snprintf(k, sizeof k, "budget-big%02d", i);
        CHECK_OK(kv_put(db, k, strlen(k), big, 64 << 10, 0));
    }
    free(big);
    CHECK_OK(kv_get_stats(db, &st));
    CHECK(st.flushes >= 1);
    CHECK_OK(kv_close(db));
}

/* The WAL segments in dir: up to cap names and inode numbers. Returns how many there are. */
static size_t wal_segments(const char *dir, char (*names)[64], ino_t *inos, size_t cap)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".log") == 0) {
            if (n < cap) {
                snprintf(names[n], 64, "%s", e->d_name);
                inos[n] = e->d_ino;
            }
            n++;
        }
    }
    closedir(d);
    return n;
}

/* Obsolete WAL segments are reused (renamed and overwritten) rather than deleted: the files
 * stay few, a later segment is an earlier one's inode, and every synced write is back after
 * reopening, through segments that held older records past the new ones. */
static void test_wal_reuse(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.memtable_bytes = 64 << 10;
    o.wal_segment_bytes = 64 << 10;
    kv_db *db = open_store(dir, &o);
    char names[8][64], path[700], probe[700];
    ino_t inos[8];
    CHECK(wal_segments(dir, names, inos, 8) == 1); /* a new store: one segment */
    char name[64];
    snprintf(name, sizeof name, "%s", names[0]);
    /* a second name keeps the first segment's inode number from being handed out again if the
     * store deleted it, so finding that inode under another .log name proves a reuse */
    snprintf(path, sizeof path, "%s/%s", dir, name);
    snprintf(probe, sizeof probe, "%s.probe", dir);
    CHECK(link(path, probe) == 0);
    struct stat st;
    CHECK(stat(probe, &st) == 0);
    int reused = 0;
    char key[32], val[200];
    memset(val, 'r', sizeof val);
    for (int i = 0; i < 3000; i++) {
        int kl = snprintf(key, sizeof key, "reuse%05d", i);
        CHECK_OK(kv_put(db, key, (size_t)kl, val, sizeof val, i % 50 == 0 ? KV_WRITE_SYNC : 0));
        if (i % 100 == 99) {
            CHECK_OK(kv_flush(db));
            size_t n = wal_segments(dir, names, inos, 8);
            CHECK(n <= 4); /* the live segment, at most DB_WAL_POOL (2) waiting, + one */
            for (size_t j = 0; j < n && j < 8; j++)
                reused |= inos[j] == st.st_ino && strcmp(names[j], name) != 0;
        }
    }
    CHECK(reused);
    CHECK(unlink(probe) == 0);
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    for (int i = 0; i < 3000; i++) {
        int kl = snprintf(key, sizeof key, "reuse%05d", i);
        void *v = NULL;
        size_t vl = 0;
        CHECK_OK(kv_get(db, NULL, key, (size_t)kl, &v, &vl, NULL));
        CHECK(vl == sizeof val && memcmp(v, val, vl) == 0);
        free(v);
    }
    CHECK_OK(kv_close(db));
}

/* The tables on every level: their bytes (files 0) or their number (files 1). */
static uint64_t table_total(kv_db *db, int files)
{
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    uint64_t total = 0;
    for (int l = 0; l < KV_MAX_LEVELS; l++)
        total += files ? st.level_files[l] : st.level_bytes[l];
    return total;
}

static uint64_t table_bytes(kv_db *db)
{
    return table_total(db, 0);
}

static uint64_t table_files(kv_db *db)
{
    return table_total(db, 1);
}

/* uncompressed_levels = 1: a flushed (level-0) table holds the raw bytes; after a full
 * compaction to a deeper level the same data is zstd-compressed. */
static void test_uncompressed_levels(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.compression_level = 3;
    o.uncompressed_levels = 1;
    kv_db *db = open_store(dir, &o);
    char key[32], val[1000];
    memset(val, 'z', sizeof val);
    for (int i = 0; i < 1000; i++) {
        int kl = snprintf(key, sizeof key, "ucl%05d", i);
        CHECK_OK(kv_put(db, key, (size_t)kl, val, sizeof val, 0));
    }
    CHECK_OK(kv_flush(db));
    uint64_t flushed = table_bytes(db);
    CHECK(flushed > 1000 * sizeof val); /* stored raw at level 0 */
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    uint64_t compacted = table_bytes(db);
    CHECK(compacted < flushed / 10); /* compressed at level 1 */
    void *v = NULL;
    size_t vl = 0;
    CHECK_OK(kv_get(db, NULL, "ucl00007", 8, &v, &vl, NULL));
    CHECK(vl == sizeof val && memcmp(v, val, vl) == 0);
    free(v);
    CHECK_OK(kv_close(db));
}

/* Polls (bounded: 10 s) until the store holds at most want tables. */
static int wait_tables_at_most(kv_db *db, uint64_t want)
{
    for (int i = 0; i < 200; i++) {
        if (table_files(db) <= want)
            return 1;
        sleep_ms(50);
    }
    fprintf(stderr, "still %llu tables, want <= %llu\n", (unsigned long long)table_files(db),
            (unsigned long long)want);
    return 0;
}

static void put_range_keys(kv_db *db, const char *fmt, int n, size_t vlen)
{
    uint8_t v[4096];
    CHECK(vlen <= sizeof v);
    for (int i = 0; i < n; i++) {
        char k[64];
        int kl = snprintf(k, sizeof k, fmt, i);
        fill_rand(v, vlen, (uint64_t)i);
        CHECK_OK(kv_put(db, k, (size_t)kl, v, vlen, 0));
    }
}

/* kv_batch_delete_range with no history window: tables wholly under the deletion go without
 * being read or rewritten, but only once no snapshot can see them; a table holding covered and
 * uncovered keys is rewritten without the covered ones by the compaction thread. */
static void test_range_delete(const char *dir)
{
    kv_options o;
    kv_options_init(&o);
    o.history_ms = 0;
    o.partition_prefix_bytes = 1; /* "b..." and "k..." never share a table */
    o.table_bytes = 256u << 10;
    kv_db *db = open_store(dir, &o);
    put_range_keys(db, "big/%06d", 3000, 1000);
    put_range_keys(db, "keep/%03d", 20, 10);
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    uint64_t before = table_files(db);
    CHECK(before >= 4);
    kv_stats st0;
    CHECK_OK(kv_get_stats(db, &st0));

    kv_snapshot *snap = NULL;
    CHECK_OK(kv_snapshot_acquire(db, 0, &snap));
    kv_batch *b = kv_batch_new();
    CHECK(b);
    CHECK_OK(kv_batch_delete_range(b, "big/", 4, "big0", 4));
    CHECK_OK(kv_batch_put(b, "big/000007", 10, "again", 5)); /* newer than the deletion */
    CHECK_OK(kv_write(db, b, 0, NULL));
    kv_batch_free(b);
    expect_s(db, NULL, "big/000006", NULL);
    expect_s(db, NULL, "big/000007", "again");
    CHECK_OK(kv_get(db, NULL, "keep/003", 8, NULL, &dummy_len, NULL));
    kv_readopts at_snap = {.snapshot = snap};
    void *v = NULL;
    size_t vl = 0;
    CHECK_OK(kv_get(db, &at_snap, "big/000006", 10, &v, &vl, NULL));
    CHECK(vl == 1000);
    free(v);
    kvlist all = {0};
    collect_all(db, NULL, &all);
    CHECK(all.n == 21); /* big/000007 and the 20 keep/ keys */
    list_free(&all);

    /* the snapshot pins the covered tables */
    CHECK_OK(kv_flush(db));
    sleep_ms(1500);
    CHECK(table_files(db) >= before);
    CHECK_OK(kv_get(db, &at_snap, "big/002999", 10, &v, &vl, NULL));
    free(v);
    kv_snapshot_release(db, snap);

    /* then they go, unread: the keep/ table and the newer big/000007 table stay */
    CHECK(wait_tables_at_most(db, 2));
    kv_stats st1;
    CHECK_OK(kv_get_stats(db, &st1));
    CHECK(st1.compaction_bytes_written == st0.compaction_bytes_written);
    expect_s(db, NULL, "big/000006", NULL);
    expect_s(db, NULL, "big/000007", "again");
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    expect_s(db, NULL, "big/002000", NULL);
    expect_s(db, NULL, "big/000007", "again");
    CHECK(verify_clean(db));

    /* partly covered: with 8 MiB tables "m/..." and "m0..." share one table; no deletion of
     * whole tables applies, the compaction thread rewrites it without the covered keys (no
     * kv_compact_range), and nothing covered shows at any point, across reopens */
    CHECK_OK(kv_close(db));
    o.table_bytes = 8u << 20;
    db = open_store(dir, &o);
    put_range_keys(db, "m/%05d", 2000, 200);
    put_range_keys(db, "m0%05d", 2000, 200);
    CHECK_OK(kv_flush(db));
    CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
    uint64_t bytes0 = table_bytes(db);
    b = kv_batch_new();
    CHECK(b);
    CHECK_OK(kv_batch_delete_range(b, "m/", 2, "m0", 2));
    CHECK_OK(kv_write(db, b, 0, NULL));
    kv_batch_free(b);
    for (int round = 0; round < 3; round++) {
        CHECK_OK(kv_flush(db));
        sleep_ms(round == 0 ? 300 : 100);
        expect_s(db, NULL, "m/00042", NULL);
        CHECK_OK(kv_get(db, NULL, "m000042", 7, NULL, &dummy_len, NULL));
        if (round == 1) {
            CHECK_OK(kv_close(db));
            db = open_store(dir, &o);
        }
    }
    int shrunk = 0; /* 2,000 covered values of 200 random bytes leave the tables */
    for (int i = 0; i < 200 && !shrunk; i++) {
        shrunk = table_bytes(db) + 350000 <= bytes0;
        if (!shrunk)
            sleep_ms(50);
    }
    if (!shrunk)
        fprintf(stderr, "tables %llu bytes, were %llu\n", (unsigned long long)table_bytes(db),
                (unsigned long long)bytes0);
    CHECK(shrunk);
    expect_s(db, NULL, "m/00042", NULL);
    CHECK_OK(kv_close(db));
    db = open_store(dir, &o);
    expect_s(db, NULL, "m/01999", NULL);
    CHECK_OK(kv_get(db, NULL, "m001999", 7, NULL, &dummy_len, NULL));
    CHECK(verify_clean(db));
    CHECK_OK(kv_close(db));
}

/* ------------------------------------------------------------------- main ---- */

int main(void)
{
    tu_seed_init();
    signal(SIGPIPE, SIG_IGN);
    test_open_options();
    test_read_only();
    test_lock();
    test_limits();

    char *root = xstrdup_path(tu_tmpdir("api"));
    char d1[600], d2[600], d3[600], d4[600], d5[600], d6[600], d7[600], d8[600], d9[600];
    char d10[600], d11[600];
    snprintf(d1, sizeof d1, "%s/main", root);
    snprintf(d11, sizeof d11, "%s/rangedel", root);
    snprintf(d2, sizeof d2, "%s/iter", root);
    snprintf(d3, sizeof d3, "%s/snap", root);
    snprintf(d4, sizeof d4, "%s/hist", root);
    snprintf(d5, sizeof d5, "%s/maint", root);
    snprintf(d6, sizeof d6, "%s/checkpoint", root);
    snprintf(d7, sizeof d7, "%s/binary", root);
    snprintf(d8, sizeof d8, "%s/budget", root);
    snprintf(d9, sizeof d9, "%s/walreuse", root);
    snprintf(d10, sizeof d10, "%s/uncompressed", root);

    kv_options o;
    kv_options_init(&o);
    o.history_ms = 3600u * 1000u;
    kv_db *db = open_store(d1, &o);
    test_basic_rw(db);
    test_batch(db);
    test_ttl(db);
    CHECK(verify_clean(db));
    CHECK_OK(kv_close(db));

    test_binary_keys(d7);
    test_iterators(d2);
    test_snapshots(d3);
    test_history_and_time(d4);
    test_maintenance(d5, d6);
    test_wal_reuse(d9);
    test_uncompressed_levels(d10);
    test_range_delete(d11);
    test_memtable_budget(d8); /* last: on failure every other check has already run */
    tu_rmtree(root);
    free(root);
    TU_DONE("test_api");
}
