/*
 * test_version.c -- the version set: MANIFEST round trip across reopen, torn tails, damaged
 * CURRENT / MANIFEST / missing tables, sticky manifest errors, manifest rotation, point reads
 * and level iterators over real tables, obsolete-file deletion, and the time map.
 */
#include <fcntl.h>
#include <pthread.h>
#include <limits.h>
#include <sys/stat.h>

#include "dbformat.h"
#include "kvio.h"
#include "memtable.h"
#include "testutil.h"
#include "version.h"

static void opts_default(kv_options *o)
{
    memset(o, 0, sizeof *o);
    o->create_if_missing = 1;
    o->block_bytes = 4096;
    o->bloom_bits_per_key = 10;
    o->table_bytes = 1 << 20;
    o->compression_level = 1;
}

static vset *vs_open(const char *dir)
{
    kv_options o;
    opts_default(&o);
    vset *vs = NULL;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    return vs;
}

static int vs_open_rc(const char *dir, const kv_options *o)
{
    vset *vs = NULL;
    int rc = vset_open(dir, o, NULL, &vs);
    if (rc == 0)
        vset_close(vs);
    return rc;
}

static int file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int table_exists(vset *vs, uint64_t number)
{
    char path[PATH_MAX];
    CHECK_OK(vset_table_path(vs, number, path, sizeof path));
    return file_exists(path);
}

static void key_of(char *buf, size_t cap, int k)
{
    snprintf(buf, cap, "key%05d", k);
}

/* Builds a table with keys [lo, hi) (every key once, value "v<k>@<seq>") at seq base + k and
 * adds it at level. Returns its number. */
static uint64_t add_table(vset *vs, int level, int lo, int hi, uint64_t base)
{
    memtable *m = mem_new();
    CHECK(m != NULL);
    for (int k = lo; k < hi; k++) {
        char key[32], val[64];
        key_of(key, sizeof key, k);
        int n = snprintf(val, sizeof val, "v%d@%llu", k, (unsigned long long)(base + k));
        CHECK_OK(mem_add(m, base + (uint64_t)k, KV_TYPE_VALUE, kv_slice_of(key, strlen(key)),
                         kv_slice_of(val, (size_t)n)));
    }
    iter *it = mem_iter_new(m);
    version_edit e;
    edit_init(&e);
    CHECK_OK(build_level0(vs, it, NULL, NULL, &e));
    iter_destroy(it);
    mem_unref(m);
    CHECK(e.nadded == 1 && e.added[0].f->entries == (uint64_t)(hi - lo));
    uint64_t number = e.added[0].f->number;
    e.added[0].level = level;
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    return number;
}

static void apply_snapshot(vset *vs, const char *name, uint64_t seq, uint64_t t)
{
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_add_snapshot(&e, name, seq, t));
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
}

static uint64_t manifest_size(const char *dir, uint64_t number)
{
    char path[PATH_MAX];
    struct stat st;
    snprintf(path, sizeof path, "%s/MANIFEST-%06llu", dir, (unsigned long long)number);
    CHECK(stat(path, &st) == 0);
    return (uint64_t)st.st_size;
}

static void manifest_path(char *out, size_t cap, const char *dir, uint64_t number)
{
    snprintf(out, cap, "%s/MANIFEST-%06llu", dir, (unsigned long long)number);
}

/* ---------------------------------------------------------------- round trip ---- */

static void test_new_store_and_flags(void)
{
    const char *tmp = tu_tmpdir("vsnew");
    char dir[600], cur[700];
    snprintf(dir, sizeof dir, "%s/db", tmp);
    kv_options o;
    opts_default(&o);
    o.create_if_missing = 0;
    CHECK_RC(vs_open_rc(dir, &o), -ENOENT);
    o.create_if_missing = 1;
    CHECK_OK(vs_open_rc(dir, &o));
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    uint8_t *text;
    size_t len;
    CHECK_OK(kvio_read_file(cur, &text, &len));
    CHECK(len == 16 && memcmp(text, "MANIFEST-000001\n", 16) == 0);
    free(text);
    o.error_if_exists = 1;
    CHECK_RC(vs_open_rc(dir, &o), -EEXIST);
    o.error_if_exists = 0;
    /* a reopen writes a fresh MANIFEST and removes the old one */
    CHECK_OK(vs_open_rc(dir, &o));
    char old[700];
    manifest_path(old, sizeof old, dir, 1);
    CHECK(!file_exists(old));
    CHECK_OK(kvio_read_file(cur, &text, &len));
    CHECK(len == 16 && memcmp(text, "MANIFEST-000002\n", 16) == 0);
    free(text);
    /* read-only opens write nothing */
    o.read_only = 1;
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    version_edit e;
    edit_init(&e);
    edit_set_last_seq(&e, 5);
    CHECK_RC(vset_log_and_apply(vs, &e), -EROFS);
    edit_free(&e);
    vset_close(vs);
    CHECK_OK(kvio_read_file(cur, &text, &len));
    CHECK(len == 16 && memcmp(text, "MANIFEST-000002\n", 16) == 0);
    free(text);
    tu_rmtree(tmp);
}

static void test_round_trip(void)
{
    const char *dir = tu_tmpdir("vsrt");
    vset *vs = vs_open(dir);
    uint64_t t1 = add_table(vs, 0, 0, 50, 100);
    uint64_t t2 = add_table(vs, 1, 100, 150, 10);
    uint64_t t3 = add_table(vs, 1, 150, 200, 20);
    apply_snapshot(vs, "alpha", 42, 1700000000123ull);
    apply_snapshot(vs, "beta", 77, 1700000001000ull);
    apply_snapshot(vs, "gamma", 99, 1700000002000ull);
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_delete_snapshot(&e, "beta"));
    edit_set_log_number(&e, 31);
    edit_set_last_seq(&e, 4321);
    vset_note_commit(vs, 10, 5000);
    vset_note_commit(vs, 20, 7500);
    vset_note_commit(vs, 30, 9000);
    CHECK_OK(vset_take_samples(vs, &e, 20));
    CHECK(e.nsamples == 2);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    uint64_t next = vset_new_file_number(vs);
    vset_close(vs);

    vs = vs_open(dir);
    CHECK(vs->log_number == 31);
    CHECK(vs->last_seq == 4321);
    CHECK(vs->next_file > next);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 1 && v->files[0][0]->number == t1);
    CHECK(v->nfiles[1] == 2 && v->files[1][0]->number == t2 && v->files[1][1]->number == t3);
    CHECK(v->files[0][0]->entries == 50 && v->files[0][0]->min_seq == 100 &&
          v->files[0][0]->max_seq == 149);
    char path[PATH_MAX];
    CHECK_OK(vset_table_path(vs, t2, path, sizeof path));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (uint64_t)st.st_size == v->files[1][0]->file_bytes);
    version_unref(v);
    vset_snapshot s;
    CHECK_OK(vset_snapshot_find(vs, "alpha", &s));
    CHECK(s.seq == 42 && s.time_ms == 1700000000123ull);
    CHECK_RC(vset_snapshot_find(vs, "beta", &s), -ENOENT);
    CHECK_OK(vset_snapshot_find(vs, "gamma", &s));
    CHECK(s.seq == 99);
    kv_snapinfo *list;
    size_t n;
    CHECK_OK(vset_snapshot_list(vs, &list, &n));
    CHECK(n == 2 && strcmp(list[0].name, "alpha") == 0 && strcmp(list[1].name, "gamma") == 0);
    free(list);
    uint64_t *seqs;
    CHECK_OK(vset_snapshot_seqs(vs, &seqs, &n));
    CHECK(n == 2 && seqs[0] == 42 && seqs[1] == 99);
    free(seqs);
    /* only the two persisted samples survived; the third was never in the MANIFEST */
    CHECK(vs->nsamples == 2 && vs->npersisted_samples == 2);
    uint64_t seq, ms;
    CHECK_OK(vset_seq_at_time(vs, 8000, &seq));
    CHECK(seq == 20);
    CHECK_OK(vset_time_of_seq(vs, 15, &ms));
    CHECK(ms == 7000);
    vset_close(vs);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------ damaged stores ---- */

static void test_torn_tail_and_corruption(void)
{
    const char *dir = tu_tmpdir("vstorn");
    vset *vs = vs_open(dir);
    uint64_t mnum = vs->manifest_number;
    uint64_t off[6];
    char name[32];
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "snap%d", i);
        apply_snapshot(vs, name, (uint64_t)i + 1, 1000);
        off[i] = log_writer_offset(vs->manifest);
    }
    vset_close(vs);
    char mpath[PATH_MAX], copy[PATH_MAX + 8];
    manifest_path(mpath, sizeof mpath, dir, mnum);
    CHECK(manifest_size(dir, mnum) == off[5]);
    snprintf(copy, sizeof copy, "%s.orig", mpath);
    CHECK_OK(kvio_copy_file(mpath, copy));

    /* torn tail: the last edit lost some bytes -> it simply did not happen */
    CHECK(truncate(mpath, (off_t)(off[5] - 3)) == 0);
    kv_options o;
    opts_default(&o);
    o.read_only = 1;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    vset_snapshot s;
    CHECK_OK(vset_snapshot_find(vs, "snap4", &s));
    CHECK_RC(vset_snapshot_find(vs, "snap5", &s), -ENOENT);
    vset_close(vs);

    /* a flipped byte in the middle (valid records follow) is corruption */
    CHECK_OK(kvio_copy_file(copy, mpath));
    int fd = open(mpath, O_RDWR);
    CHECK(fd >= 0);
    uint8_t b;
    off_t at = (off_t)(off[1] + (off[2] - off[1]) / 2);
    CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    snprintf(name, sizeof name, "MANIFEST-%06llu", (unsigned long long)mnum);
    CHECK(strstr(kv_last_error(), name) != NULL);
    o.read_only = 0;
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);

    /* a MANIFEST that CURRENT names but that is gone */
    CHECK(unlink(mpath) == 0);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    CHECK(strstr(kv_last_error(), name) != NULL);
    CHECK_OK(kvio_copy_file(copy, mpath));
    CHECK_OK(vs_open_rc(dir, &o));

    /* CURRENT damaged in several ways */
    char cur[PATH_MAX], tmpc[PATH_MAX];
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    snprintf(tmpc, sizeof tmpc, "%s/CURRENT.x", dir);
    const char *bad[] = {"",
                         "MANIFEST-\n",
                         "MANIFEST-000002",
                         "MANIFEST-00x002\n",
                         "manifest-000002\n",
                         "MANIFEST-000002\n\n",
                         "MANIFEST-000002 \n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(kvio_replace_atomic(dir, cur, tmpc, bad[i], strlen(bad[i])));
        CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
        CHECK(strstr(kv_last_error(), "CURRENT") != NULL);
    }
    /* CURRENT missing while tables exist: never start over on top of them */
    CHECK(unlink(cur) == 0);
    char sst[PATH_MAX];
    snprintf(sst, sizeof sst, "%s/000099.sst", dir);
    fd = open(sst, O_CREAT | O_WRONLY, 0644);
    CHECK(fd >= 0);
    close(fd);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    tu_rmtree(dir);
}

static void test_missing_table(void)
{
    const char *dir = tu_tmpdir("vsmiss");
    vset *vs = vs_open(dir);
    add_table(vs, 0, 0, 10, 1);
    uint64_t t = add_table(vs, 2, 20, 30, 1);
    char path[PATH_MAX];
    CHECK_OK(vset_table_path(vs, t, path, sizeof path));
    vset_close(vs);
    char saved[PATH_MAX + 8];
    snprintf(saved, sizeof saved, "%s.keep", path);
    CHECK(rename(path, saved) == 0);
    kv_options o;
    opts_default(&o);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    CHECK(strstr(kv_last_error(), path) != NULL);
    /* a truncated table is caught by its size */
    CHECK_OK(kvio_copy_file(saved, path));
    CHECK(truncate(path, 100) == 0);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    CHECK(strstr(kv_last_error(), path) != NULL);
    CHECK_OK(kvio_copy_file(saved, path));
    CHECK_OK(vs_open_rc(dir, &o));
    tu_rmtree(dir);
}

/* Writes a MANIFEST by hand holding rec and points CURRENT at it. */
static void write_raw_manifest(const char *dir, uint64_t number, const void *rec, size_t len)
{
    char path[PATH_MAX], cur[PATH_MAX], tmp[PATH_MAX], text[64];
    manifest_path(path, sizeof path, dir, number);
    unlink(path);
    log_writer *w;
    CHECK_OK(log_writer_create(path, (uint32_t)number, &w));
    CHECK_OK(log_writer_add(w, rec, len));
    CHECK_OK(log_writer_sync(w));
    CHECK_OK(log_writer_close(w));
    snprintf(cur, sizeof cur, "%s/CURRENT", dir);
    snprintf(tmp, sizeof tmp, "%s/CURRENT.tmp", dir);
    int n = snprintf(text, sizeof text, "MANIFEST-%06llu\n", (unsigned long long)number);
    CHECK_OK(kvio_replace_atomic(dir, cur, tmp, text, (size_t)n));
}

static void test_bad_records(void)
{
    const char *dir = tu_tmpdir("vsbad");
    kv_options o;
    opts_default(&o);
    o.read_only = 1;
    /* the frozen tag values: LOG_NUMBER 1, NEXT_FILE 2, LAST_SEQ 3 */
    const uint8_t good[] = {1, 7, 2, 9, 3, 100};
    write_raw_manifest(dir, 5, good, sizeof good);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    CHECK(vs->log_number == 7 && vs->next_file == 9 && vs->last_seq == 100);
    vset_close(vs);
    const uint8_t unknown[] = {1, 7, 2, 9, 3, 100, 99, 1};
    write_raw_manifest(dir, 6, unknown, sizeof unknown);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "MANIFEST-000006: unknown record tag 99 at offset 0") != NULL);
    /* truncated NEW_FILE payload, level out of range, key too short, bad varint */
    const uint8_t trunc[] = {1, 7, 2, 9, 3, 100, 4, 0, 12, 100};
    const uint8_t level[] = {1, 7, 2, 9, 3, 100, 5, 9, 1};
    const uint8_t shortkey[] = {1, 7, 2, 9, 3, 100, 9, 1, 3, 'a', 'b', 'c'};
    const uint8_t varint[] = {1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
    const uint8_t *bad[] = {trunc, level, shortkey, varint};
    size_t lens[] = {sizeof trunc, sizeof level, sizeof shortkey, sizeof varint};
    for (size_t i = 0; i < 4; i++) {
        write_raw_manifest(dir, 7 + i, bad[i], lens[i]);
        CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
        CHECK(strstr(kv_last_error(), "MANIFEST-") != NULL);
    }
    /* a record deleting a file that is not there does not fit the state */
    const uint8_t nofile[] = {1, 7, 2, 9, 3, 100, 5, 1, 42};
    write_raw_manifest(dir, 20, nofile, sizeof nofile);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    CHECK(strstr(kv_last_error(), "000042") != NULL);
    /* no next-file at all */
    const uint8_t partial[] = {1, 7};
    write_raw_manifest(dir, 21, partial, sizeof partial);
    CHECK_RC(vs_open_rc(dir, &o), -EUCLEAN);
    tu_rmtree(dir);
}

/* Random bit flips anywhere in a MANIFEST: open either succeeds (torn tail / lost edit) or
 * fails with -EUCLEAN; it never crashes. */
static void test_fuzz_manifest(void)
{
    const char *dir = tu_tmpdir("vsfuzz");
    vset *vs = vs_open(dir);
    add_table(vs, 0, 0, 10, 1);
    for (int i = 0; i < 20; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%d", i);
        apply_snapshot(vs, name, (uint64_t)i, 1000);
    }
    uint64_t mnum = vs->manifest_number;
    vset_close(vs);
    char mpath[PATH_MAX], copy[PATH_MAX + 8];
    manifest_path(mpath, sizeof mpath, dir, mnum);
    snprintf(copy, sizeof copy, "%s.orig", mpath);
    CHECK_OK(kvio_copy_file(mpath, copy));
    uint64_t size = manifest_size(dir, mnum);
    kv_options o;
    opts_default(&o);
    o.read_only = 1;
    for (int i = 0; i < 200; i++) {
        CHECK_OK(kvio_copy_file(copy, mpath));
        int fd = open(mpath, O_RDWR);
        CHECK(fd >= 0);
        off_t at = (off_t)tu_rand_below(size);
        uint8_t b;
        CHECK(pread(fd, &b, 1, at) == 1);
        b ^= (uint8_t)(1u << tu_rand_below(8));
        CHECK(pwrite(fd, &b, 1, at) == 1);
        if (tu_rand_below(4) == 0)
            CHECK(ftruncate(fd, (off_t)tu_rand_below(size)) == 0);
        close(fd);
        int rc = vs_open_rc(dir, &o);
        CHECK(rc == 0 || rc == -EUCLEAN);
    }
    tu_rmtree(dir);
}

/* --------------------------------------------------------- sticky, rotation ---- */

static int fail_sync(kvio_op op, const char *path, void *arg)
{
    KV_UNUSED(path);
    KV_UNUSED(arg);
    return op == KVIO_SYNC ? -EIO : 0;
}

static void test_sticky_error(void)
{
    const char *dir = tu_tmpdir("vssticky");
    vset *vs = vs_open(dir);
    add_table(vs, 0, 0, 10, 1);
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_delete_file(&e, 3, 12345));
    CHECK_RC(vset_log_and_apply(vs, &e), -EINVAL); /* refused before writing: not sticky */
    edit_free(&e);
    apply_snapshot(vs, "ok", 1, 1);
    kvio_set_fault_hook(fail_sync, NULL);
    edit_init(&e);
    CHECK_OK(edit_add_snapshot(&e, "lost", 2, 2));
    CHECK_RC(vset_log_and_apply(vs, &e), -EIO);
    edit_free(&e);
    kvio_set_fault_hook(NULL, NULL);
    vset_snapshot s;
    CHECK_RC(vset_snapshot_find(vs, "lost", &s), -ENOENT);
    edit_init(&e);
    CHECK_OK(edit_add_snapshot(&e, "later", 3, 3));
    CHECK_RC(vset_log_and_apply(vs, &e), -EIO);
    edit_free(&e);
    vset_close(vs);
    vs = vs_open(dir);
    CHECK_OK(vset_snapshot_find(vs, "ok", &s));
    CHECK_RC(vset_snapshot_find(vs, "later", &s), -ENOENT);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 1);
    version_unref(v);
    vset_close(vs);
    tu_rmtree(dir);
}

static void test_rotation(void)
{
    const char *dir = tu_tmpdir("vsrot");
    vset *vs = vs_open(dir);
    uint64_t t = add_table(vs, 0, 0, 10, 1);
    uint64_t first = vs->manifest_number;
    /* edits with 16 KiB keys: about 4 MiB of MANIFEST in ~130 add/delete pairs */
    sst_props fake;
    memset(&fake, 0, sizeof fake);
    char *big = malloc(16384);
    CHECK(big != NULL);
    memset(big, 'z', 16384);
    CHECK_OK(ikey_append(&fake.smallest, kv_slice_of(big, 16384), 5, KV_TYPE_VALUE));
    CHECK_OK(ikey_append(&fake.largest, kv_slice_of(big, 16384), 1, KV_TYPE_VALUE));
    free(big);
    fake.entries = 2;
    int i = 0;
    while (vs->manifest_number == first) {
        uint64_t num = vset_new_file_number(vs);
        version_edit e;
        edit_init(&e);
        CHECK_OK(edit_add_file(&e, 3, num, &fake));
        CHECK_OK(vset_log_and_apply(vs, &e));
        edit_free(&e);
        edit_init(&e);
        CHECK_OK(edit_delete_file(&e, 3, num));
        CHECK_OK(vset_log_and_apply(vs, &e));
        edit_free(&e);
        CHECK(++i < 1000);
    }
    sst_props_free(&fake);
    CHECK(i > 100);
    apply_snapshot(vs, "keep", 7, 8);
    char old[PATH_MAX];
    manifest_path(old, sizeof old, dir, first);
    CHECK(!file_exists(old));
    CHECK(manifest_size(dir, vs->manifest_number) < 64 * 1024);
    vset_close(vs);
    vs = vs_open(dir);
    vset_snapshot s;
    CHECK_OK(vset_snapshot_find(vs, "keep", &s));
    CHECK(s.seq == 7 && s.time_ms == 8 && vs->nsnaps == 1);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 1 && v->files[0][0]->number == t && v->nfiles[3] == 0);
    version_unref(v);
    vset_close(vs);
    tu_rmtree(dir);
}

/* ------------------------------------------------------- reads and iterators ---- */

static void test_get_and_iters(void)
{
    const char *dir = tu_tmpdir("vsget");
    vset *vs = vs_open(dir);
    /* L2: keys 0..299 old (seq 1000+k); L1: three files over 0..299 newer for even ranges;
     * L0: two overlapping files, the newest wins. */
    add_table(vs, 2, 0, 300, 1000);
    add_table(vs, 1, 0, 100, 5000);
    add_table(vs, 1, 100, 150, 5000);
    add_table(vs, 1, 200, 260, 5000);
    add_table(vs, 0, 50, 120, 9000);
    add_table(vs, 0, 100, 110, 20000);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 2 && v->files[0][0]->number > v->files[0][1]->number);
    for (int k = 0; k < 320; k++) {
        char key[32];
        key_of(key, sizeof key, k);
        uint64_t base = k >= 300                           ? 0
                        : k >= 100 && k < 110              ? 20000
                        : k >= 50 && k < 120               ? 9000
                        : k < 150 || (k >= 200 && k < 260) ? 5000
                                                           : 1000;
        uint64_t seq;
        unsigned type;
        kv_buf val = {0};
        int rc = version_get(v, kv_slice_of(key, strlen(key)), KV_MAX_SEQ, &seq, &type, &val);
        if (base == 0) {
            CHECK_RC(rc, 0);
            continue;
        }
        CHECK_RC(rc, 1);
        CHECK(seq == base + (uint64_t)k && type == KV_TYPE_VALUE);
        char want[64];
        snprintf(want, sizeof want, "v%d@%llu", k, (unsigned long long)seq);
        CHECK(val.len == strlen(want) && memcmp(val.data, want, val.len) == 0);
        kv_buf_free(&val);
        /* reading below the newest layer finds the older one */
        if (base == 20000) {
            rc = version_get(v, kv_slice_of(key, strlen(key)), 19999, &seq, &type, &val);
            CHECK_RC(rc, 1);
            CHECK(seq == 9000 + (uint64_t)k);
            kv_buf_free(&val);
        }
        rc = version_get(v, kv_slice_of(key, strlen(key)), 999, &seq, &type, &val);
        CHECK_RC(rc, 0);
    }
    /* iterators: merged count = total entries; level iterator both ways and seek */
    iter **its = NULL;
    size_t n = 0, cap = 0;
    CHECK_OK(version_add_iters(v, &its, &n, &cap));
    CHECK(n == 4); /* two L0 files, L1, L2 */
    iter *l1 = its[2];
    size_t cnt = 0;
    char prev[32] = "";
    for (iter_seek_first(l1); iter_valid(l1); iter_next(l1)) {
        kv_slice uk = ikey_user_key(iter_key(l1));
        char cur[32];
        snprintf(cur, sizeof cur, "%.*s", (int)uk.len, uk.data);
        CHECK(strcmp(prev, cur) < 0);
        snprintf(prev, sizeof prev, "%s", cur);
        cnt++;
    }
    CHECK_OK(iter_status(l1));
    CHECK(cnt == 210);
    cnt = 0;
    for (iter_seek_last(l1); iter_valid(l1); iter_prev(l1))
        cnt++;
    CHECK(cnt == 210);
    /* seek into the gap 150..199 lands on key 200 of the third file; prev crosses back */
    kv_buf target = {0};
    char key[32];
    key_of(key, sizeof key, 170);
    CHECK_OK(ikey_append(&target, kv_slice_of(key, strlen(key)), KV_MAX_SEQ, KV_TYPE_SEEK));
    iter_seek(l1, kv_buf_slice(&target));
    CHECK(iter_valid(l1));
    key_of(key, sizeof key, 200);
    CHECK(kv_slice_cmp(ikey_user_key(iter_key(l1)), kv_slice_of(key, strlen(key))) == 0);
    iter_prev(l1);
    CHECK(iter_valid(l1));
    key_of(key, sizeof key, 149);
    CHECK(kv_slice_cmp(ikey_user_key(iter_key(l1)), kv_slice_of(key, strlen(key))) == 0);
    key_of(key, sizeof key, 999);
    target.len = 0;
    CHECK_OK(ikey_append(&target, kv_slice_of(key, strlen(key)), KV_MAX_SEQ, KV_TYPE_SEEK));
    iter_seek(l1, kv_buf_slice(&target));
    CHECK(!iter_valid(l1) && iter_status(l1) == 0);
    kv_buf_free(&target);
    iter *m = iter_merge_new(its, n);
    cnt = 0;
    for (iter_seek_first(m); iter_valid(m); iter_next(m))
        cnt++;
    CHECK(cnt == 300 + 210 + 70 + 10);
    iter_destroy(m);
    CHECK(version_level_bytes(v, 1) ==
          v->files[1][0]->file_bytes + v->files[1][1]->file_bytes + v->files[1][2]->file_bytes);
    version_unref(v);
    /* an overlapping file in a level >= 1 is refused */
    memtable *mt = mem_new();
    key_of(key, sizeof key, 120);
    CHECK_OK(mem_add(mt, 30000, KV_TYPE_VALUE, kv_slice_of(key, strlen(key)), kv_slice_of("x", 1)));
    iter *it = mem_iter_new(mt);
    version_edit e;
    edit_init(&e);
    CHECK_OK(build_level0(vs, it, NULL, NULL, &e));
    iter_destroy(it);
    mem_unref(mt);
    CHECK(e.nadded == 1);
    e.added[0].level = 1;
    CHECK_RC(vset_log_and_apply(vs, &e), -EINVAL);
    edit_free(&e);
    vset_close(vs);
    tu_rmtree(dir);
}

static void test_obsolete_unlink(void)
{
    const char *dir = tu_tmpdir("vsobs");
    vset *vs = vs_open(dir);
    uint64_t a = add_table(vs, 0, 0, 10, 1);
    uint64_t b = add_table(vs, 0, 5, 15, 100);
    version *pinned = vset_current(vs);
    sst_reader *r;
    CHECK_OK(file_reader(pinned->files[0][1], &r)); /* opened reader is closed on last unref */
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_delete_file(&e, 0, a));
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    CHECK(table_exists(vs, a)); /* still referenced by the pinned version */
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 1 && v->files[0][0]->number == b);
    version_unref(v);
    version_unref(pinned);
    CHECK(!table_exists(vs, a));
    CHECK(table_exists(vs, b));
    vset_close(vs);
    CHECK(table_exists(vs = vs_open(dir), b));
    vset_close(vs);
    tu_rmtree(dir);
}

/* Readers race on the lazy table opens while edits are installed. */
typedef struct reader_arg {
    vset *vs;
    int errors;
} reader_arg;

static void *reader_main(void *p)
{
    reader_arg *a = p;
    for (int round = 0; round < 200; round++) {
        version *v = vset_current(a->vs);
        for (int k = 0; k < 400; k += 7) {
            char key[32];
            key_of(key, sizeof key, k);
            uint64_t seq;
            unsigned type;
            kv_buf val = {0};
            if (version_get(v, kv_slice_of(key, strlen(key)), KV_MAX_SEQ, &seq, &type, &val) != 1)
                a->errors++;
            kv_buf_free(&val);
        }
        version_unref(v);
    }
    return NULL;
}

static void test_concurrent_reads(void)
{
    const char *dir = tu_tmpdir("vsconc");
    vset *vs = vs_open(dir);
    for (int f = 0; f < 4; f++)
        add_table(vs, 1, f * 100, f * 100 + 100, 10);
    vset_close(vs);
    vs = vs_open(dir); /* no reader opened yet */
    pthread_t th[4];
    reader_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (reader_arg){vs, 0};
        CHECK(pthread_create(&th[i], NULL, reader_main, &args[i]) == 0);
    }
    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof name, "c%d", i);
        apply_snapshot(vs, name, (uint64_t)i, 1);
        vset_note_commit(vs, (uint64_t)i + 1, (uint64_t)i * 500);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        CHECK(args[i].errors == 0);
    }
    vset_close(vs);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------------ time map ---- */

static void test_timemap(void)
{
    const char *dir = tu_tmpdir("vstime");
    vset *vs = vs_open(dir);
    uint64_t seq, ms;
    CHECK_OK(vset_seq_at_time(vs, 5000, &seq));
    CHECK(seq == 0);
    uint64_t before = kv_now_ms();
    CHECK_OK(vset_time_of_seq(vs, 1, &ms));
    CHECK(ms >= before);
    vset_note_commit(vs, 5, 10100);
    vset_note_commit(vs, 8, 10900); /* same second: raises the unpersisted sample */
    vset_note_commit(vs, 12, 12000);
    vset_note_commit(vs, 15, 11000); /* clock went back: clamped to second 12 */
    vset_note_commit(vs, 14, 13000); /* not a newer sequence: ignored */
    vset_note_commit(vs, 20, 15500);
    CHECK(vs->nsamples == 3);
    struct {
        uint64_t t, want;
    } at[] = {{9999, 0},   {10000, 8},  {10999, 8},  {11500, 8},
              {12000, 15}, {14999, 15}, {15000, 20}, {99000, 20}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++) {
        CHECK_OK(vset_seq_at_time(vs, at[i].t, &seq));
        CHECK(seq == at[i].want);
    }
    struct {
        uint64_t s, want;
    } of[] = {{1, 10000}, {8, 10000}, {9, 12000}, {15, 12000}, {16, 15000}, {20, 15000}};
    for (size_t i = 0; i < sizeof of / sizeof of[0]; i++) {
        CHECK_OK(vset_time_of_seq(vs, of[i].s, &ms));
        CHECK(ms == of[i].want);
    }
    CHECK_OK(vset_time_of_seq(vs, 21, &ms));
    CHECK(ms >= before);
    /* persist up to 15, then a commit in second 12... is older; one in second 15 raises the
     * unpersisted sample 15; persisting freezes it */
    version_edit e;
    edit_init(&e);
    CHECK_OK(vset_take_samples(vs, &e, 15));
    CHECK(e.nsamples == 2);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    CHECK(vs->npersisted_samples == 2);
    vset_note_commit(vs, 25, 15900);
    CHECK(vs->nsamples == 3 && vs->samples[2].max_seq == 25);
    edit_init(&e);
    CHECK_OK(vset_take_samples(vs, &e, 100));
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    vset_note_commit(vs, 30, 15950); /* second 15 is frozen now: a new sample */
    CHECK(vs->nsamples == 4 && vs->samples[3].sec == 15 && vs->samples[2].max_seq == 25);
    CHECK_OK(vset_seq_at_time(vs, 15000, &seq));
    CHECK(seq == 30);
    CHECK_OK(vset_time_of_seq(vs, 28, &ms));
    CHECK(ms == 15000);
    /* a sample taken, then raised in memory before the edit lands: both stay consistent */
    vset_note_commit(vs, 40, 17000);
    edit_init(&e);
    CHECK_OK(vset_take_samples(vs, &e, 100));
    vset_note_commit(vs, 45, 17500);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    CHECK_OK(vset_seq_at_time(vs, 17000, &seq));
    CHECK(seq == 45);
    vset_close(vs);

    vs = vs_open(dir);
    CHECK_OK(vset_seq_at_time(vs, 17999, &seq));
    CHECK(seq == 40); /* 45 was never persisted */
    CHECK_OK(vset_seq_at_time(vs, 15000, &seq));
    CHECK(seq == 30 || seq == 25);
    CHECK_OK(vset_time_of_seq(vs, 9, &ms));
    CHECK(ms == 12000);
    /* recovery found the WAL ending at 35: samples above are clamped / dropped */
    vset_truncate_samples(vs, 35);
    CHECK_OK(vset_seq_at_time(vs, 17999, &seq));
    CHECK(seq == 35);
    vset_truncate_samples(vs, 14);
    CHECK_OK(vset_seq_at_time(vs, 99000, &seq));
    CHECK(seq == 14);
    /* pruning keeps the last sample before the floor */
    size_t nbefore = vs->nsamples;
    vset_prune_samples(vs, 13);
    CHECK(vs->nsamples == nbefore - 1);
    CHECK_OK(vset_seq_at_time(vs, 12500, &seq));
    CHECK(seq == 14);
    CHECK_OK(vset_seq_at_time(vs, 10500, &seq));
    CHECK(seq == 0);
    vset_close(vs);
    tu_rmtree(dir);
}

/* Many samples: binary searches agree with a linear scan. */
static void test_timemap_random(void)
{
    const char *dir = tu_tmpdir("vstimer");
    vset *vs = vs_open(dir);
    uint64_t t = 1000000, s = 0;
    for (int i = 0; i < 5000; i++) {
        t += tu_rand_below(3000);
        s += 1 + tu_rand_below(5);
        vset_note_commit(vs, s, t);
    }
    for (int i = 0; i < 2000; i++) {
        uint64_t q = 1000000 + tu_rand_below(t - 1000000 + 5000), seq, want = 0;
        CHECK_OK(vset_seq_at_time(vs, q, &seq));
        for (size_t k = 0; k < vs->nsamples; k++)
            if (vs->samples[k].sec <= q / 1000)
                want = vs->samples[k].max_seq;
        CHECK(seq == want);
        uint64_t qs = 1 + tu_rand_below(s), ms;
        CHECK_OK(vset_time_of_seq(vs, qs, &ms));
        size_t k = 0;
        while (vs->samples[k].max_seq < qs)
            k++;
        CHECK(ms == vs->samples[k].sec * 1000);
    }
    vset_close(vs);
    tu_rmtree(dir);
}

int main(void)
{
    tu_seed_init();
    test_new_store_and_flags();
    test_round_trip();
    test_torn_tail_and_corruption();
    test_missing_table();
    test_bad_records();
    test_fuzz_manifest();
    test_sticky_error();
    test_rotation();
    test_get_and_iters();
    test_obsolete_unlink();
    test_concurrent_reads();
    test_timemap();
    test_timemap_random();
    TU_DONE("test_version");
}
