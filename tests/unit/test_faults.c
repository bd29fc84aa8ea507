/*
 * test_faults.c -- the store under injected I/O failures (kvio's fault hook, and a file size
 * limit for a real partial write): a failed WAL fsync is sticky (every later write fails with
 * the same error until reopen, reads go on, and after reopening every write acknowledged
 * before it is there); a full disk is not: the refused WAL append, flush or MANIFEST edit
 * leaves nothing behind, and once there is room the store goes on without a reopen.
 */
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "kv.h"
#include "kvio.h"
#include "testutil.h"

typedef struct fault_plan {
    kvio_op op;
    const char *path_part; /* fail only calls whose path contains this (NULL: any) */
    int err;
    int armed;
    int hits;
} fault_plan;

static int fault_hook(kvio_op op, const char *path, void *arg)
{
    fault_plan *p = arg;
    if (!p->armed || op != p->op)
        return 0;
    if (p->path_part && (!path || !strstr(path, p->path_part)))
        return 0;
    p->hits++;
    return p->err;
}

static void put_str(kv_db *db, const char *k, const char *v, unsigned flags, int want)
{
    CHECK_RC(kv_put(db, k, strlen(k), v, strlen(v), flags), want);
}

static void expect_value(kv_db *db, const char *k, const char *v)
{
    void *val = NULL;
    size_t len = 0;
    CHECK_OK(kv_get(db, NULL, k, strlen(k), &val, &len, NULL));
    CHECK(len == strlen(v) && memcmp(val, v, len) == 0);
    free(val);
}

/* A failed fsync of the WAL: that write fails, every later write fails with the same error,
 * reads keep working, close reports it, and a reopen recovers everything acknowledged. */
static void test_sticky_wal_fsync(void)
{
    const char *dir = tu_tmpdir("faults-sync");
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    put_str(db, "a", "1", KV_WRITE_SYNC, 0);
    put_str(db, "b", "2", 0, 0);

    fault_plan plan = {KVIO_SYNC, ".log", -EIO, 1, 0};
    kvio_set_fault_hook(fault_hook, &plan);
    put_str(db, "c", "3", KV_WRITE_SYNC, -EIO);
    CHECK(plan.hits == 1);
    plan.armed = 0; /* the disk "recovers": the store must not believe it */
    put_str(db, "d", "4", 0, -EIO);
    put_str(db, "e", "5", KV_WRITE_SYNC, -EIO);
    CHECK_RC(kv_delete(db, "a", 1, 0), -EIO);
    CHECK(strlen(kv_last_error()) > 0);
    expect_value(db, "a", "1"); /* reads go on */
    expect_value(db, "b", "2");
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    CHECK(st.sticky_error == -EIO);
    CHECK_RC(kv_close(db), -EIO);
    kvio_set_fault_hook(NULL, NULL);

    CHECK_OK(kv_open(dir, &o, &db));
    expect_value(db, "a", "1");
    expect_value(db, "b", "2");
    void *v = NULL;
    size_t n;
    CHECK_RC(kv_get(db, NULL, "d", 1, &v, &n, NULL), -ENOENT); /* refused, never written */
    CHECK_RC(kv_get(db, NULL, "e", 1, &v, &n, NULL), -ENOENT);
    put_str(db, "f", "6", KV_WRITE_SYNC, 0); /* writable again after reopen */
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
}

/* The stats of db: OUT *st. */
static kv_stats stats_of(kv_db *db)
{
    kv_stats st;
    CHECK_OK(kv_get_stats(db, &st));
    return st;
}

static void expect_absent(kv_db *db, const char *k)
{
    void *v = NULL;
    size_t n;
    CHECK_RC(kv_get(db, NULL, k, strlen(k), &v, &n, NULL), -ENOENT);
}

/* A WAL append the disk has no room for fails alone: nothing sticks, the next write once
 * there is room goes through without a reopen, and the refused one never shows. */
static void test_wal_full_then_freed(void)
{
    const char *dir = tu_tmpdir("faults-write");
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    put_str(db, "k1", "v1", 0, 0);
    fault_plan plan = {KVIO_WRITE, ".log", -ENOSPC, 1, 0};
    kvio_set_fault_hook(fault_hook, &plan);
    put_str(db, "k2", "v2", 0, -ENOSPC);
    put_str(db, "k2b", "v2", KV_WRITE_SYNC, -ENOSPC);
    CHECK(strstr(kv_last_error(), "No space left on device") != NULL);
    CHECK(stats_of(db).sticky_error == 0);
    plan.armed = 0; /* room again */
    put_str(db, "k3", "v3", KV_WRITE_SYNC, 0);
    expect_value(db, "k1", "v1");
    expect_value(db, "k3", "v3");
    expect_absent(db, "k2");
    CHECK_OK(kv_close(db));
    kvio_set_fault_hook(NULL, NULL);
    CHECK_OK(kv_open(dir, &o, &db));
    expect_value(db, "k1", "v1");
    expect_value(db, "k3", "v3");
    expect_absent(db, "k2");
    expect_absent(db, "k2b");
    CHECK_OK(kv_verify(db, NULL, NULL));
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
}

/* The newest WAL segment's size. */
static uint64_t newest_log_size(const char *dir)
{
    char **names = NULL;
    size_t n = 0;
    CHECK_OK(kvio_list_dir(dir, &names, &n));
    char best[512] = "";
    for (size_t i = 0; i < n; i++) {
        size_t l = strlen(names[i]);
        if (l > 4 && strcmp(names[i] + l - 4, ".log") == 0 && strcmp(names[i], best) > 0)
            snprintf(best, sizeof best, "%s", names[i]);
        free(names[i]);
    }
    free(names);
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, best);
    struct stat st;
    CHECK(best[0] && stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

/* A real partial append: with the file size limited (RLIMIT_FSIZE, as a full disk would),
 * a 4 MiB record gets part of the way into the WAL before write(2) refuses the rest. The
 * part must be cut off: later records follow the last whole one, and recovery reads them
 * all with no damage reported. */
static void test_wal_partial_record(void)
{
    const char *dir = tu_tmpdir("faults-partial");
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    put_str(db, "before", "1", KV_WRITE_SYNC, 0);
    size_t big_len = 4u << 20;
    char *big = malloc(big_len);
    CHECK(big != NULL);
    for (size_t i = 0; i < big_len; i++)
        big[i] = (char)('a' + i % 23);

    struct rlimit old, lim;
    CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    signal(SIGXFSZ, SIG_IGN); /* write(2) then fails with EFBIG instead of killing us */
    lim = old;
    lim.rlim_cur = (rlim_t)(newest_log_size(dir) + 256 * 1024);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    CHECK_RC(kv_put(db, "big", 3, big, big_len, 0), -EFBIG);
    CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
    CHECK(stats_of(db).sticky_error == 0);

    put_str(db, "after", "2", KV_WRITE_SYNC, 0);
    CHECK_OK(kv_put(db, "big2", 4, big, big_len, KV_WRITE_SYNC));
    CHECK_OK(kv_close(db));
    CHECK_OK(kv_open(dir, &o, &db));
    expect_value(db, "before", "1");
    expect_value(db, "after", "2");
    expect_absent(db, "big");
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(kv_get(db, NULL, "big2", 4, &v, &n, NULL));
    CHECK(n == big_len && memcmp(v, big, n) == 0);
    free(v);
    CHECK_OK(kv_verify(db, NULL, NULL));
    CHECK_OK(kv_close(db));
    free(big);
    tu_rmtree(dir);
}

/* Retries kv_flush while the disk-full retry runs (at most 10 s). */
static int flush_when_room(kv_db *db)
{
    int rc = -1;
    for (int i = 0; i < 100 && (rc = kv_flush(db)) != 0; i++)
        usleep(100 * 1000);
    return rc;
}

static void put_numbered(kv_db *db, int from, int to)
{
    char key[32], val[64];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        snprintf(val, sizeof val, "value-%d", i);
        put_str(db, key, val, 0, 0);
    }
}

static void expect_numbered(kv_db *db, int from, int to)
{
    char key[32], val[64];
    for (int i = from; i < to; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        snprintf(val, sizeof val, "value-%d", i);
        expect_value(db, key, val);
    }
}

/* Reopens dir: keys 0..n-1 are there and every checksum verifies; then removes dir. */
static void reopen_expect_numbered(const char *dir, const kv_options *o, int n)
{
    kv_db *db;
    CHECK_OK(kv_open(dir, o, &db));
    expect_numbered(db, 0, n);
    CHECK_OK(kv_verify(db, NULL, NULL));
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
}

/* A flush whose table does not fit (on_path: the table, or the MANIFEST edit that records
 * it) removes what it wrote and is tried again: nothing sticks, writes that do not need it
 * go on, and once there is room the flush completes and everything is there, also after a
 * reopen. */
static void check_flush_full_then_freed(const char *tag, const char *on_path)
{
    const char *dir = tu_tmpdir(tag);
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    put_numbered(db, 0, 200);
    fault_plan plan = {KVIO_WRITE, on_path, -ENOSPC, 1, 0};
    kvio_set_fault_hook(fault_hook, &plan);
    CHECK_RC(kv_flush(db), -ENOSPC);
    CHECK(plan.hits >= 1);
    kv_stats st = stats_of(db);
    CHECK(st.sticky_error == 0 && st.no_space == -ENOSPC && st.flushes == 0);
    CHECK(tu_count_files(dir, ".sst") == 0); /* the failed table is gone */
    put_numbered(db, 200, 300);              /* the new memtable takes them */
    CHECK_RC(kv_flush(db), -ENOSPC);         /* would have to wait for the first flush */
    plan.armed = 0;                          /* room again */
    CHECK_OK(flush_when_room(db));
    st = stats_of(db);
    CHECK(st.sticky_error == 0 && st.no_space == 0 && st.flushes >= 1);
    CHECK(tu_count_files(dir, ".sst") == st.level_files[0]); /* no table left over */
    expect_numbered(db, 0, 300);
    CHECK_OK(kv_close(db));
    kvio_set_fault_hook(NULL, NULL);

    reopen_expect_numbered(dir, &o, 300);
}

/* Fails writes to every MANIFEST but the one CURRENT names (arg: its name). */
static int new_manifest_full(kvio_op op, const char *path, void *arg)
{
    return op == KVIO_WRITE && path && strstr(path, "MANIFEST-") && !strstr(path, arg) ? -ENOSPC
                                                                                       : 0;
}

/* Opening writes a new MANIFEST; with no room for it the store opens all the same and goes
 * on appending to the old one, which reads back whole on the next open. */
static void test_open_without_room_for_a_manifest(void)
{
    const char *dir = tu_tmpdir("faults-open");
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    put_numbered(db, 0, 100);
    CHECK_OK(kv_close(db));

    char cur_path[1024], current[64] = "";
    snprintf(cur_path, sizeof cur_path, "%s/CURRENT", dir);
    FILE *f = fopen(cur_path, "r");
    CHECK(f != NULL && fgets(current, sizeof current, f) != NULL);
    if (f)
        fclose(f);
    current[strcspn(current, "\n")] = 0;
    kvio_set_fault_hook(new_manifest_full, current);
    CHECK_OK(kv_open(dir, &o, &db)); /* its recovery flush appends to the old MANIFEST */
    expect_numbered(db, 0, 100);
    put_numbered(db, 100, 200);
    CHECK_OK(kv_flush(db));
    CHECK(stats_of(db).sticky_error == 0);
    CHECK_OK(kv_close(db));
    kvio_set_fault_hook(NULL, NULL);

    reopen_expect_numbered(dir, &o, 200);
}

static void test_flush_full_then_freed(void)
{
    check_flush_full_then_freed("faults-flush", ".sst");
    check_flush_full_then_freed("faults-manifest", "MANIFEST");
}

int main(void)
{
    tu_seed_init();
    test_sticky_wal_fsync();
    test_wal_full_then_freed();
    test_wal_partial_record();
    test_flush_full_then_freed();
    test_open_without_room_for_a_manifest();
    TU_DONE("test_faults");
}
