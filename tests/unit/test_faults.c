/*
 * test_faults.c -- the store under injected I/O failures (kvio's fault hook): a failed WAL
 * fsync or append is sticky (every later write fails with the same error until reopen, reads
 * go on), a failed flush stops writes the same way, and after reopening every write
 * acknowledged before the failure is there.
 */
#include <string.h>

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

/* A failed WAL append (disk full) is sticky too. */
static void test_sticky_wal_write(void)
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
    plan.armed = 0;
    put_str(db, "k3", "v3", 0, -ENOSPC);
    expect_value(db, "k1", "v1");
    kv_close(db);
    kvio_set_fault_hook(NULL, NULL);
    CHECK_OK(kv_open(dir, &o, &db));
    expect_value(db, "k1", "v1");
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
}

/* A flush whose table cannot be written stops writes (background error), and nothing that
 * was acknowledged is lost: the WAL still holds it. */
static void test_failed_flush(void)
{
    const char *dir = tu_tmpdir("faults-flush");
    kv_db *db;
    kv_options o;
    kv_options_init(&o);
    CHECK_OK(kv_open(dir, &o, &db));
    char key[32], val[64];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        snprintf(val, sizeof val, "value-%d", i);
        put_str(db, key, val, 0, 0);
    }
    fault_plan plan = {KVIO_WRITE, ".sst", -ENOSPC, 1, 0};
    kvio_set_fault_hook(fault_hook, &plan);
    CHECK(kv_flush(db) < 0);
    CHECK(plan.hits >= 1);
    plan.armed = 0;
    put_str(db, "after", "x", 0, -ENOSPC);
    kv_close(db);
    kvio_set_fault_hook(NULL, NULL);

    CHECK_OK(kv_open(dir, &o, &db));
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "key%04d", i);
        snprintf(val, sizeof val, "value-%d", i);
        expect_value(db, key, val);
    }
    CHECK_OK(kv_verify(db, NULL, NULL));
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
}

int main(void)
{
    tu_seed_init();
    test_sticky_wal_fsync();
    test_sticky_wal_write();
    test_failed_flush();
    TU_DONE("test_faults");
}
