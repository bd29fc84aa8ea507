/*
 * test_compaction.c -- compaction against a brute-force reference of the retention rules
 * (version.h retention; compaction.c header), output cutting only between user keys, picking
 * and busy marks, L0 overlap closure, the last level compacting into itself, cleanup after a
 * failed compaction, unlinking of obsolete inputs once no version references them,
 * partitioned outputs with level 0 counted by depth, and range-deletion upkeep.
 */
#include <dirent.h>
#include <limits.h>
#include <sys/stat.h>

#include "dbformat.h"
#include "kvio.h"
#include "memtable.h"
#include "testutil.h"
#include "version.h"

typedef struct ent {
    int key;
    uint64_t seq;
    unsigned type;
    uint64_t expire; /* TTL values */
    int val;         /* value id */
} ent;

static void opts_default(kv_options *o, size_t table_bytes)
{
    memset(o, 0, sizeof *o);
    o->create_if_missing = 1;
    o->block_bytes = 512;
    o->bloom_bits_per_key = 10;
    o->table_bytes = table_bytes;
    o->compression_level = (int)tu_rand_below(2);
}

static size_t key_str(char *buf, int k)
{
    return (size_t)sprintf(buf, "k%04d", k);
}

/* Stored value bytes of e into buf. */
static size_t stored_value(const ent *e, uint8_t *buf)
{
    size_t n = 0;
    if (e->type == KV_TYPE_DELETE)
        return 0;
    if (e->type == KV_TYPE_VALUE_TTL) {
        kv_enc64(buf, e->expire);
        n = 8;
    }
    return n + (size_t)sprintf((char *)buf + n, "val-%d-%llu", e->val, (unsigned long long)e->seq);
}

static int file_exists(vset *vs, uint64_t number)
{
    char path[PATH_MAX];
    struct stat st;
    CHECK_OK(vset_table_path(vs, number, path, sizeof path));
    return stat(path, &st) == 0;
}

/* Writes m out as level-0 tables (build_level0) into *e, freshly initialised; drops m. */
static void flush_into(vset *vs, memtable *m, version_edit *e)
{
    iter *it = mem_iter_new(m);
    CHECK(it != NULL);
    edit_init(e);
    CHECK_OK(build_level0(vs, it, NULL, NULL, e));
    iter_destroy(it);
    mem_unref(m);
}

/* Builds a table of es[0..n) at level; returns its number (0 if nothing was written). */
static uint64_t add_table(vset *vs, int level, const ent *es, size_t n)
{
    memtable *m = mem_new();
    CHECK(m != NULL);
    for (size_t i = 0; i < n; i++) {
        char key[32];
        uint8_t val[64];
        size_t klen = key_str(key, es[i].key), vlen = stored_value(&es[i], val);
        CHECK_OK(mem_add(m, es[i].seq, es[i].type, kv_slice_of(key, klen), kv_slice_of(val, vlen)));
    }
    version_edit e;
    flush_into(vs, m, &e);
    if (n == 0) {
        CHECK(e.nadded == 0);
        edit_free(&e);
        return 0;
    }
    CHECK(e.nadded == 1 && e.added[0].f->entries == n); /* these stores do not partition */
    uint64_t number = e.added[0].f->number;
    CHECK(file_exists(vs, number));
    e.added[0].level = level;
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    return number;
}

/* Flushes puts of keys "<fam><idx>" for idx in [from, to) and one key "i0" (an inode record
 * written with every batch) at seq, into level 0 of a store that partitions by the first byte;
 * checks that one table per family came out. */
static void flush_family(vset *vs, char fam, int from, int to, uint64_t seq)
{
    memtable *m = mem_new();
    CHECK(m != NULL);
    char key[32];
    for (int i = from; i < to; i++) {
        size_t kl = (size_t)sprintf(key, "%c%06d", fam, i);
        CHECK_OK(mem_add(m, seq++, KV_TYPE_VALUE, kv_slice_of(key, kl), kv_slice_of("v", 1)));
    }
    CHECK_OK(mem_add(m, seq, KV_TYPE_VALUE, kv_slice_of("i0", 2), kv_slice_of("size", 4)));
    version_edit e;
    flush_into(vs, m, &e);
    CHECK(e.nadded == 2);
    CHECK(e.added[0].f->entries + e.added[1].f->entries == (uint64_t)(to - from) + 1);
    for (size_t i = 0; i < 2; i++) { /* each table holds one family */
        const kv_buf *lo = &e.added[i].f->smallest, *hi = &e.added[i].f->largest;
        CHECK(lo->data[0] == hi->data[0]);
    }
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
}

/* What run_and_apply's edit did. */
typedef struct run_result {
    uint64_t written;      /* bytes the compaction wrote */
    size_t deleted, added; /* files the edit removed and added */
    int level;             /* the level of the first added file (-1: none) */
} run_result;

/* Runs c with retention r, applies its edit and frees c. */
static run_result run_and_apply(vset *vs, compaction *c, const retention *r)
{
    CHECK(c != NULL);
    version_edit e;
    edit_init(&e);
    run_result out = {1, 0, 0, -1};
    CHECK_OK(compaction_run(c, r, &e, NULL, &out.written));
    out.deleted = e.ndeleted;
    out.added = e.nadded;
    if (e.nadded)
        out.level = e.added[0].level;
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    compaction_free(c);
    return out;
}

/* Runs the compaction the picker chooses, keeping no history. */
static run_result run_picked(vset *vs)
{
    retention r = {1ull << 40, NULL, 0, 0}; /* reads only above every seq: no history */
    return run_and_apply(vs, vset_pick_compaction(vs), &r);
}

static void count_pace(void *arg)
{
    (*(int *)arg)++;
}

/* vset.compaction_pace: a compaction calls it once per VSET_PACE_BYTES it writes; a flush
 * (level 0 output, which writers may be waiting for) never does. */
static void test_pace(void)
{
    const char *dir = tu_tmpdir("cmppace");
    kv_options o;
    opts_default(&o, 64u << 20);
    o.compression_level = 0;
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    int paced = 0;
    vs->compaction_pace = count_pace;
    vs->compaction_pace_arg = &paced;
    memtable *m = mem_new();
    CHECK(m != NULL);
    uint8_t val[1024];
    memset(val, 'v', sizeof val);
    for (int i = 0; i < 3000; i++) { /* ~3 MiB */
        char key[32];
        size_t kl = key_str(key, i);
        CHECK_OK(mem_add(m, 1 + (uint64_t)i, KV_TYPE_VALUE, kv_slice_of(key, kl),
                         kv_slice_of(val, sizeof val)));
    }
    version_edit e;
    flush_into(vs, m, &e);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    CHECK(paced == 0);
    int busy;
    retention r = {0, NULL, 0, 0};
    uint64_t written = run_and_apply(vs, vset_compact_range(vs, 0, NULL, NULL, &busy), &r).written;
    CHECK(written > 2 * VSET_PACE_BYTES);
    CHECK(paced == (int)(written / VSET_PACE_BYTES) ||
          paced == (int)(written / VSET_PACE_BYTES) - 1);
    vset_close(vs);
    tu_rmtree(dir);
}

/* The entries build_level0 keeps of one memtable under retention r (its table's entry count;
 * level0_kept_bytes must agree with it being empty or not). */
static uint64_t flush_kept(vset *vs, memtable *m, const retention *r)
{
    iter *it = mem_iter_new(m);
    CHECK(it != NULL);
    version_edit e;
    edit_init(&e);
    uint64_t bytes = level0_kept_bytes(it, mem_drops(m), r);
    CHECK_OK(build_level0(vs, it, mem_drops(m), r, &e));
    iter_destroy(it);
    uint64_t n = 0;
    for (size_t i = 0; i < e.nadded; i++)
        n += e.added[i].f->entries;
    CHECK((n == 0) == (bytes == 0));
    vset_discard_added(vs, &e);
    edit_free(&e);
    return n;
}

/* A flush leaves out the values no reader can see, by the compaction's rule: k has versions
 * at 1, 2, 3 and j one at 5 under a range deletion at 10; deletions are always kept. */
static void test_flush_drops_hidden_values(void)
{
    const char *dir = tu_tmpdir("cmpflush");
    kv_options o;
    opts_default(&o, 64u << 20);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    memtable *m = mem_new();
    CHECK(m != NULL);
    for (uint64_t s = 1; s <= 3; s++)
        CHECK_OK(mem_add(m, s, KV_TYPE_VALUE, kv_slice_of("k", 1), kv_slice_of("v", 1)));
    CHECK_OK(mem_add(m, 4, KV_TYPE_DELETE, kv_slice_of("d", 1), kv_slice_of(NULL, 0)));
    CHECK_OK(mem_add(m, 5, KV_TYPE_VALUE, kv_slice_of("j", 1), kv_slice_of("v", 1)));
    CHECK_OK(mem_add_drop(m, 10, kv_slice_of("j", 1), kv_slice_of("j\x01", 2)));

    CHECK(flush_kept(vs, m, NULL) == 5);  /* no retention given: everything */
    retention everyone = {0, NULL, 0, 0}; /* reads at any seq: nothing hidden */
    CHECK(flush_kept(vs, m, &everyone) == 5);
    retention now = {100, NULL, 0, 0};   /* history 0: only the newest of each key */
    CHECK(flush_kept(vs, m, &now) == 2); /* k@3 and the deletion of d */
    uint64_t snap2[] = {2};
    retention snap = {100, snap2, 1, 0}; /* a snapshot at 2 still sees k@2 */
    CHECK(flush_kept(vs, m, &snap) == 3);
    retention floor2 = {2, NULL, 0, 0}; /* reads at >= 2: k@2, k@3, j@5 (its drop is at 10) */
    CHECK(flush_kept(vs, m, &floor2) == 4);
    mem_unref(m);
    vset_close(vs);
    tu_rmtree(dir);
}

/* partition_prefix_bytes: a flush writes one table per key family; level 0 is counted by
 * depth (overlapping tables), not by files; a family written in key order moves to level 1
 * without a rewrite while the overlapping records beside it are merged. */
static void test_partitions(void)
{
    const char *dir = tu_tmpdir("cmppart");
    kv_options o;
    opts_default(&o, 1 << 20);
    o.partition_prefix_bytes = 1;
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    for (int f = 0; f < 3; f++)
        flush_family(vs, 'c', f * 100, f * 100 + 100, 1 + (uint64_t)f * 1000);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 6 && v->l0_depth == 3); /* the three "i0" tables overlap */
    version_unref(v);
    CHECK(vset_pick_compaction(vs) == NULL); /* depth 3 < VSET_L0_COMPACT_TRIGGER */
    flush_family(vs, 'c', 300, 400, 4000);
    v = vset_current(vs);
    CHECK(v->nfiles[0] == 8 && v->l0_depth == 4);
    uint64_t oldest = v->files[0][7]->number; /* the first flush's 'c' table */
    CHECK(v->files[0][7]->smallest.data[0] == 'c');
    version_unref(v);

    run_result rr = run_picked(vs);
    CHECK(rr.written == 0 && rr.deleted == 1 && rr.added == 1); /* moved, not rewritten */
    v = vset_current(vs);
    CHECK(v->nfiles[0] == 7 && v->nfiles[1] == 1 && v->files[1][0]->number == oldest);
    CHECK(v->l0_depth == 4);
    version_unref(v);
    /* now the oldest is the first "i0" table: all four merge into one level-1 table */
    rr = run_picked(vs);
    CHECK(rr.written > 0 && rr.deleted == 4 && rr.added == 1);
    v = vset_current(vs);
    CHECK(v->nfiles[0] == 3 && v->l0_depth == 1 && v->nfiles[1] == 2);
    CHECK(v->files[1][1]->entries == 1); /* only the newest "i0" is left (no history) */
    version_unref(v);
    CHECK(vset_pick_compaction(vs) == NULL);
    vset_close(vs);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------ the reference ---- */

static int ent_order(const void *a, const void *b)
{
    const ent *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return x->seq > y->seq ? -1 : x->seq < y->seq ? 1 : 0;
}

/* The rules written out naively: in (sorted key asc, seq desc) -> out. */
static size_t reference(const ent *in, size_t n, const retention *r, int deep_lo, int deep_hi,
                        ent *out)
{
    size_t nout = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i, first = nout;
        uint64_t newer = UINT64_MAX;
        for (; j < n && in[j].key == in[i].key; j++) {
            uint64_t s = in[j].seq;
            int keep = newer > r->floor_seq;
            for (size_t k = 0; k < r->nsnaps; k++)
                if (s <= r->snap_seqs[k] && r->snap_seqs[k] < newer)
                    keep = 1;
            newer = s;
            if (!keep)
                continue;
            ent e = in[j];
            if (e.type == KV_TYPE_VALUE_TTL && e.expire != 0 && e.expire <= r->expiry_floor_ms)
                e.type = KV_TYPE_DELETE;
            out[nout++] = e;
        }
        int base = !(in[i].key >= deep_lo && in[i].key <= deep_hi);
        while (base && nout > first && out[nout - 1].type == KV_TYPE_DELETE &&
               out[nout - 1].seq < r->floor_seq)
            nout--;
        i = j;
    }
    return nout;
}

/* What a reader at seq p (expiry judged at t) sees for key: -1 none, else the index. */
static long visible(const ent *es, size_t n, int key, uint64_t p, uint64_t t)
{
    for (size_t i = 0; i < n; i++) {
        if (es[i].key != key || es[i].seq > p)
            continue;
        if (es[i].type == KV_TYPE_DELETE)
            return -1;
        if (es[i].type == KV_TYPE_VALUE_TTL && es[i].expire != 0 && es[i].expire <= t)
            return -1;
        return (long)i;
    }
    return -1;
}

/* ------------------------------------------------------------ reading outputs ---- */

static int added_order(const void *a, const void *b)
{
    const struct edit_file *x = a, *y = b;
    return ikey_cmp(kv_buf_slice(&x->f->smallest), kv_buf_slice(&y->f->smallest));
}

/* Reads every entry of the edit's added files (sorted by range) into out; checks that no user
 * key is in two files and that the metadata matches the contents. */
static size_t read_outputs(vset *vs, version_edit *e, ent *out, size_t cap)
{
    size_t n = 0;
    qsort(e->added, e->nadded, sizeof *e->added, added_order);
    int prev_last = -1;
    for (size_t i = 0; i < e->nadded; i++) {
        file_meta *f = e->added[i].f;
        char path[PATH_MAX];
        sst_reader *r;
        CHECK_OK(vset_table_path(vs, f->number, path, sizeof path));
        CHECK_OK(sst_reader_open(path, f->number, NULL, &r));
        iter *it = sst_reader_iter(r);
        size_t start = n;
        for (iter_seek_first(it); iter_valid(it); iter_next(it)) {
            kv_parsed_key pk;
            CHECK_OK(ikey_parse(iter_key(it), &pk));
            CHECK(n < cap);
            ent *x = &out[n++];
            memset(x, 0, sizeof *x);
            char kb[32];
            snprintf(kb, sizeof kb, "%.*s", (int)pk.user_key.len, pk.user_key.data);
            CHECK(sscanf(kb, "k%4d", &x->key) == 1);
            x->seq = pk.seq;
            x->type = pk.type;
            kv_slice v = iter_value(it);
            if (pk.type == KV_TYPE_DELETE) {
                CHECK(v.len == 0);
            } else {
                size_t off = 0;
                if (pk.type == KV_TYPE_VALUE_TTL) {
                    CHECK(v.len >= 8);
                    x->expire = kv_dec64(v.data);
                    off = 8;
                }
                unsigned long long s;
                char buf[64];
                snprintf(buf, sizeof buf, "%.*s", (int)(v.len - off), v.data + off);
                CHECK(sscanf(buf, "val-%d-%llu", &x->val, &s) == 2 && s == pk.seq);
            }
        }
        CHECK_OK(iter_status(it));
        iter_destroy(it);
        sst_reader_close(r);
        CHECK(n > start && f->entries == n - start);
        CHECK(out[start].key > prev_last); /* no user key split across outputs */
        prev_last = out[n - 1].key;
    }
    return n;
}

/* ---------------------------------------------------------- the random test ---- */

#define MAX_ENTS 3000

static void check_same(const ent *got, size_t ngot, const ent *want, size_t nwant)
{
    CHECK(ngot == nwant);
    for (size_t i = 0; i < ngot; i++) {
        CHECK(got[i].key == want[i].key && got[i].seq == want[i].seq);
        CHECK(got[i].type == want[i].type);
        if (want[i].type != KV_TYPE_DELETE)
            CHECK(got[i].val == want[i].val);
        if (want[i].type == KV_TYPE_VALUE_TTL)
            CHECK(got[i].expire == want[i].expire);
    }
}

static void random_round(int round)
{
    static ent all[MAX_ENTS], sorted[MAX_ENTS], want[MAX_ENTS], got[MAX_ENTS];
    const char *dir = tu_tmpdir("cmprand");
    size_t tb = round % 3 == 0 ? 1 : round % 3 == 1 ? 700 : (1u << 20);
    kv_options o;
    opts_default(&o, tb);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));

    int nkeys = 5 + (int)tu_rand_below(60);
    int with_deep = round % 2;
    uint64_t seq = 1;
    int deep_lo = nkeys / 3, deep_hi = nkeys / 3 + 5;
    if (with_deep) { /* the oldest versions of a few keys, two levels below the output */
        ent deep[6];
        for (int k = 0; k < 6; k++)
            deep[k] = (ent){deep_lo + k, seq++, KV_TYPE_VALUE, 0, 1000 + k};
        add_table(vs, 3, deep, 6);
    } else {
        deep_lo = deep_hi = INT32_MIN;
    }
    size_t n = 200 + tu_rand_below(MAX_ENTS - 200);
    for (size_t i = 0; i < n; i++) {
        ent *e = &all[i];
        int hot = tu_rand_below(4) == 0;
        e->key = hot ? nkeys / 2 : (int)tu_rand_below((uint64_t)nkeys);
        e->seq = seq++;
        uint64_t t = tu_rand_below(10);
        e->type = t < 5 ? KV_TYPE_VALUE : t < 8 ? KV_TYPE_DELETE : KV_TYPE_VALUE_TTL;
        e->expire = e->type == KV_TYPE_VALUE_TTL ? tu_rand_below(3) * 1000 : 0;
        e->val = (int)i;
    }
    /* L0 files over consecutive sequence ranges: a higher number holds newer data */
    size_t nfiles = 1 + tu_rand_below(6), at = 0;
    for (size_t f = 0; f < nfiles; f++) {
        size_t cnt = f + 1 == nfiles ? n - at : tu_rand_below(n - at + 1);
        add_table(vs, 0, all + at, cnt);
        at += cnt;
    }
    uint64_t snaps[4];
    size_t nsnaps = tu_rand_below(5);
    for (size_t i = 0; i < nsnaps; i++)
        snaps[i] = 1 + tu_rand_below(seq);
    for (size_t i = 1; i < nsnaps; i++) /* sort, then drop duplicates */
        for (size_t k = i; k > 0 && snaps[k - 1] > snaps[k]; k--) {
            uint64_t t = snaps[k];
            snaps[k] = snaps[k - 1];
            snaps[k - 1] = t;
        }
    size_t u = 0;
    for (size_t i = 0; i < nsnaps; i++)
        if (u == 0 || snaps[u - 1] != snaps[i])
            snaps[u++] = snaps[i];
    retention r = {tu_rand_below(seq + 10), snaps, u, tu_rand_below(3500)};
    if (round % 5 == 0)
        r.floor_seq = 0; /* keep everything */
    if (round % 4 < 2)
        r.expiry_floor_ms = tu_rand_below(4) * 1000; /* exactly at some expiries */

    int busy = 1;
    compaction *c = vset_compact_range(vs, 0, NULL, NULL, &busy);
    CHECK(c != NULL && busy == 0 && compaction_level(c) == 0);
    version_edit e;
    edit_init(&e);
    uint64_t rd = 0, wr = 0;
    CHECK_OK(compaction_run(c, &r, &e, &rd, &wr));
    CHECK(rd > 0);
    memcpy(sorted, all, n * sizeof *all);
    qsort(sorted, n, sizeof *sorted, ent_order);
    size_t nwant = reference(sorted, n, &r, deep_lo, deep_hi, want);
    size_t ngot = read_outputs(vs, &e, got, MAX_ENTS);
    check_same(got, ngot, want, nwant);
    if (tb == 1) {
        /* every user key gets its own file */
        size_t keys = 0;
        for (size_t i = 0; i < nwant; i++)
            keys += i == 0 || want[i].key != want[i - 1].key;
        CHECK(e.nadded == keys);
    }
    /* what every allowed reader sees is unchanged (keys with no deeper data) */
    for (int k = 0; k < nkeys; k++) {
        if (k >= deep_lo && k <= deep_hi)
            continue;
        uint64_t points[8];
        size_t np = 0;
        for (size_t i = 0; i < u; i++)
            points[np++] = snaps[i];
        points[np++] = r.floor_seq;
        points[np++] = r.floor_seq + 1 + tu_rand_below(seq);
        points[np++] = KV_MAX_SEQ;
        for (size_t i = 0; i < np; i++) {
            uint64_t t = r.expiry_floor_ms + tu_rand_below(2) * 1000;
            long a = visible(sorted, n, k, points[i], t), b = visible(got, ngot, k, points[i], t);
            CHECK((a < 0) == (b < 0));
            if (a >= 0)
                CHECK(sorted[a].seq == got[b].seq);
        }
    }
    /* install: inputs go away once the pinned old version is released */
    version *old = vset_current(vs);
    uint64_t in0 = old->files[0][0]->number;
    uint64_t out_bytes = 0;
    for (size_t i = 0; i < e.nadded; i++)
        out_bytes += e.added[i].f->file_bytes;
    CHECK(wr == out_bytes);
    size_t nadded = e.nadded;
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    compaction_free(c);
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 0 && v->nfiles[1] == nadded);
    version_unref(v);
    CHECK(file_exists(vs, in0));
    version_unref(old);
    CHECK(!file_exists(vs, in0));
    vset_close(vs);
    /* the result survives a reopen (every output exists with its size) */
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    vset_close(vs);
    tu_rmtree(dir);
}

/* ------------------------------------------------------------ picking etc. ---- */

static ent mk(int key, uint64_t seq)
{
    return (ent){key, seq, KV_TYPE_VALUE, 0, key};
}

static void test_pick_and_busy(void)
{
    const char *dir = tu_tmpdir("cmppick");
    kv_options o;
    opts_default(&o, 1 << 20);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    CHECK(vset_pick_compaction(vs) == NULL);
    uint64_t s = 1;
    for (int f = 0; f < VSET_L0_COMPACT_TRIGGER; f++) {
        /* every table holds key 90, so level 0 is f + 1 files deep */
        ent es[3] = {mk(f * 10, s), mk(f * 10 + 1, s + 1), mk(90, s + 2)};
        s += 3;
        add_table(vs, 0, es, 3);
        compaction *c = vset_pick_compaction(vs);
        CHECK((c != NULL) == (f + 1 == VSET_L0_COMPACT_TRIGGER));
        if (c) {
            CHECK(compaction_level(c) == 0);
            CHECK(vset_pick_compaction(vs) == NULL); /* its inputs are taken */
            int busy = 0;
            CHECK(vset_compact_range(vs, 0, NULL, NULL, &busy) == NULL && busy == 1);
            compaction_free(c);
        }
    }
    /* the oldest file pulls in every file overlapping it */
    retention r = {0, NULL, 0, 0};
    run_result rr = run_and_apply(vs, vset_pick_compaction(vs), &r);
    CHECK(rr.deleted == VSET_L0_COMPACT_TRIGGER && rr.added == 1 && rr.level == 1);
    CHECK(vset_pick_compaction(vs) == NULL); /* level 0 is empty */

    /* disjoint files are one file deep: below the depth trigger, until there are
     * VSET_L0_FILE_TRIGGER of them; then the oldest moves down alone */
    for (int f = 0; f < VSET_L0_FILE_TRIGGER; f++) {
        CHECK(vset_pick_compaction(vs) == NULL);
        ent es[2] = {mk(200 + f * 10, s), mk(200 + f * 10 + 1, s + 1)};
        s += 2;
        add_table(vs, 0, es, 2);
    }
    compaction *c = vset_pick_compaction(vs);
    CHECK(c != NULL && compaction_level(c) == 0);
    rr = run_and_apply(vs, c, &r);
    CHECK(rr.deleted == 1 && rr.added == 1 && rr.written == 0);
    CHECK(vset_pick_compaction(vs) == NULL);

    /* a level over its byte target is picked (a pretend 20 MiB table in L1) */
    sst_props fake;
    memset(&fake, 0, sizeof fake);
    char key[16];
    size_t kl = key_str(key, 500);
    CHECK_OK(ikey_append(&fake.smallest, kv_slice_of(key, kl), 1, KV_TYPE_VALUE));
    CHECK_OK(ikey_append(&fake.largest, kv_slice_of(key, kl), 1, KV_TYPE_VALUE));
    fake.file_bytes = 20u << 20;
    fake.entries = 1;
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_add_file(&e, 1, vset_new_file_number(vs), &fake));
    sst_props_free(&fake);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    c = vset_pick_compaction(vs);
    CHECK(c != NULL && compaction_level(c) == 1);
    compaction_free(c);
    vset_close(vs);
    tu_rmtree(dir);
}

/* Overlapping L0 files are compacted together, disjoint ones are left. */
static void test_l0_closure_and_levels(void)
{
    const char *dir = tu_tmpdir("cmpclos");
    kv_options o;
    opts_default(&o, 1 << 20);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    ent a[] = {mk(0, 1), mk(20, 2)};   /* [0, 20]  */
    ent b[] = {mk(15, 3), mk(40, 4)};  /* [15, 40] overlaps a */
    ent c3[] = {mk(60, 5), mk(70, 6)}; /* [60, 70] alone */
    ent d[] = {mk(35, 7), mk(50, 8)};  /* [35, 50] overlaps b only */
    add_table(vs, 0, a, 2);
    add_table(vs, 0, b, 2);
    uint64_t nc = add_table(vs, 0, c3, 2);
    add_table(vs, 0, d, 2);
    char key[16];
    size_t kl = key_str(key, 0);
    kv_slice lo = kv_slice_of(key, kl), hi = lo;
    int busy;
    retention r = {0, NULL, 0, 0};
    run_result rr = run_and_apply(vs, vset_compact_range(vs, 0, &lo, &hi, &busy), &r);
    CHECK(rr.deleted == 3); /* a, then b (overlaps a), then d (overlaps b) */
    version *v = vset_current(vs);
    CHECK(v->nfiles[0] == 1 && v->files[0][0]->number == nc && v->nfiles[1] == 1);
    CHECK(v->files[1][0]->entries == 6);
    version_unref(v);

    /* L0 [60,70] into L1, whose file [0,50] it does not overlap: L1 gets two files */
    rr = run_and_apply(vs, vset_compact_range(vs, 0, NULL, NULL, &busy), &r);
    CHECK(rr.deleted == 1);
    /* L1 range [10, 65] takes both L1 files down to L2 */
    kl = key_str(key, 10);
    char key2[16];
    size_t kl2 = key_str(key2, 65);
    lo = kv_slice_of(key, kl);
    hi = kv_slice_of(key2, kl2);
    compaction *c = vset_compact_range(vs, 1, &lo, &hi, &busy);
    CHECK(c != NULL && compaction_level(c) == 1);
    rr = run_and_apply(vs, c, &r);
    CHECK(rr.deleted == 2 && rr.added == 1 && rr.level == 2);
    /* nothing in L1 now */
    c = vset_compact_range(vs, 1, NULL, NULL, &busy);
    CHECK(c == NULL && busy == 0);
    /* the last level compacts into itself */
    ent z[] = {mk(900, 100), mk(901, 101)};
    add_table(vs, KV_MAX_LEVELS - 1, z, 2);
    rr = run_and_apply(vs, vset_compact_range(vs, KV_MAX_LEVELS - 1, NULL, NULL, &busy), &r);
    CHECK(rr.deleted == 1 && rr.added == 1 && rr.level == KV_MAX_LEVELS - 1);
    /* reads still find everything */
    v = vset_current(vs);
    int keys[] = {0, 15, 20, 35, 40, 50, 60, 70, 900, 901};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        kl = key_str(key, keys[i]);
        uint64_t seq;
        unsigned type;
        kv_buf val = {0};
        CHECK_RC(version_get(v, kv_slice_of(key, kl), KV_MAX_SEQ, &seq, &type, &val), 1);
        kv_buf_free(&val);
    }
    version_unref(v);
    vset_close(vs);
    tu_rmtree(dir);
}

/* A DELETE above data in a deeper level survives; over nothing it goes. */
static void test_tombstone_base_level(void)
{
    const char *dir = tu_tmpdir("cmptomb");
    kv_options o;
    opts_default(&o, 1 << 20);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    ent deep[] = {mk(5, 1)};
    add_table(vs, 2, deep, 1);
    ent top[] = {{5, 10, KV_TYPE_DELETE, 0, 0}, {7, 11, KV_TYPE_DELETE, 0, 0}};
    add_table(vs, 0, top, 2);
    int busy;
    compaction *c = vset_compact_range(vs, 0, NULL, NULL, &busy);
    version_edit e;
    edit_init(&e);
    retention r = {100, NULL, 0, 0};
    CHECK_OK(compaction_run(c, &r, &e, NULL, NULL));
    ent got[4];
    CHECK(read_outputs(vs, &e, got, 4) == 1);
    CHECK(got[0].key == 5 && got[0].type == KV_TYPE_DELETE);
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
    compaction_free(c);
    version *v = vset_current(vs);
    char key[16];
    size_t kl = key_str(key, 5);
    uint64_t seq;
    unsigned type;
    kv_buf val = {0};
    CHECK_RC(version_get(v, kv_slice_of(key, kl), KV_MAX_SEQ, &seq, &type, &val), 1);
    CHECK(type == KV_TYPE_DELETE && seq == 10);
    kv_buf_free(&val);
    version_unref(v);
    vset_close(vs);
    tu_rmtree(dir);
}

/* Applies one range deletion [k<lo>, k<hi>) at seq to the version, as a flush's edit does. */
static void add_drop(vset *vs, int lo, int hi, uint64_t seq)
{
    char a[16], b[16];
    size_t al = key_str(a, lo), bl = key_str(b, hi);
    version_edit e;
    edit_init(&e);
    CHECK_OK(edit_add_drop(&e, seq, kv_slice_of(a, al), kv_slice_of(b, bl)));
    CHECK_OK(vset_log_and_apply(vs, &e));
    edit_free(&e);
}

/* One vset_drop_upkeep pass with r, applied. Returns the changes it made. */
static int upkeep(vset *vs, const retention *r)
{
    version_edit e;
    edit_init(&e);
    int n = vset_drop_upkeep(vs, r, &e);
    CHECK(n >= 0);
    if (n > 0)
        CHECK_OK(vset_log_and_apply(vs, &e));
    vset_drop_upkeep_done(vs, &e);
    edit_free(&e);
    return n;
}

static size_t files_at(vset *vs, int level)
{
    version *v = vset_current(vs);
    size_t n = v->nfiles[level];
    version_unref(v);
    return n;
}

static size_t drops_now(vset *vs)
{
    version *v = vset_current(vs);
    size_t n = drops_count(v->drops);
    version_unref(v);
    return n;
}

/* Range-deletion upkeep: nothing while the deletion is above the floor; a table partly under
 * it, here in the last level, is flagged and rewritten into that level without the hidden
 * keys; a table wholly under it goes without being read, but not while a snapshot between its
 * entries and the deletion needs it; then the deletion retires, and nothing it hid shows. */
static void test_drop_upkeep(void)
{
    const char *dir = tu_tmpdir("cmpdrop");
    kv_options o;
    opts_default(&o, 1 << 20);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    ent whole[] = {mk(10, 1), mk(11, 2), mk(12, 3)};
    add_table(vs, 3, whole, 3);
    ent part[] = {mk(18, 4), mk(20, 5), mk(30, 6)}; /* 18, 20 hidden; 30 is not */
    add_table(vs, KV_MAX_LEVELS - 1, part, 3);
    add_drop(vs, 10, 25, 50);
    CHECK(drops_now(vs) == 1);

    uint64_t snap = 2;
    retention below = {40, NULL, 0, 0}; /* the deletion is above the floor: nothing yet */
    CHECK(upkeep(vs, &below) == 0);
    CHECK(vset_pick_compaction(vs) == NULL);
    retention pinned = {100, &snap, 1, 0}; /* a snapshot at 2 still sees k0010 and k0011 */
    CHECK(upkeep(vs, &pinned) == 0);
    CHECK(files_at(vs, 3) == 1);
    compaction *c = vset_pick_compaction(vs); /* the last-level table: the snapshot sees none */
    CHECK(c != NULL && compaction_level(c) == KV_MAX_LEVELS - 1);
    run_result rr = run_and_apply(vs, c, &pinned);
    CHECK(rr.deleted == 1 && rr.added == 1 && rr.level == KV_MAX_LEVELS - 1);
    CHECK(upkeep(vs, &pinned) == 0 && drops_now(vs) == 1); /* level 3 still holds it back */
    CHECK(vset_pick_compaction(vs) == NULL);

    retention free_r = {100, NULL, 0, 0};
    CHECK(upkeep(vs, &free_r) == 2); /* the wholly covered table goes, the deletion retires */
    CHECK(files_at(vs, 3) == 0 && drops_now(vs) == 0 && vset_pick_compaction(vs) == NULL);
    version *v = vset_current(vs);
    char key[16];
    uint64_t seq;
    unsigned type;
    kv_buf val = {0};
    CHECK_RC(version_get(v, kv_slice_of(key, key_str(key, 20)), KV_MAX_SEQ, &seq, &type, &val), 0);
    CHECK_RC(version_get(v, kv_slice_of(key, key_str(key, 30)), KV_MAX_SEQ, &seq, &type, &val), 1);
    CHECK(seq == 6);
    kv_buf_free(&val);
    version_unref(v);
    vset_close(vs);
    CHECK_OK(vset_open(dir, &o, NULL, &vs)); /* the MANIFEST says the same */
    CHECK(drops_now(vs) == 0 && files_at(vs, KV_MAX_LEVELS - 1) == 1 && files_at(vs, 3) == 0);
    vset_close(vs);
    tu_rmtree(dir);
}

static int fail_dir_sync(kvio_op op, const char *path, void *arg)
{
    return op == KVIO_SYNC && path && strcmp(path, (const char *)arg) == 0 ? -EIO : 0;
}

static void test_failure_cleanup(void)
{
    const char *dir = tu_tmpdir("cmpfail");
    kv_options o;
    opts_default(&o, 1);
    vset *vs;
    CHECK_OK(vset_open(dir, &o, NULL, &vs));
    ent es[40];
    for (int i = 0; i < 40; i++)
        es[i] = mk(i, (uint64_t)i + 1);
    add_table(vs, 0, es, 20);
    add_table(vs, 0, es + 20, 20);
    CHECK(tu_count_files(dir, ".sst") == 2);
    int busy;
    compaction *c = vset_compact_range(vs, 0, NULL, NULL, &busy);
    version_edit e;
    edit_init(&e);
    retention r = {0, NULL, 0, 0};
    kvio_set_fault_hook(fail_dir_sync, (void *)vs->dir);
    CHECK_RC(compaction_run(c, &r, &e, NULL, NULL), -EIO);
    kvio_set_fault_hook(NULL, NULL);
    CHECK(e.nadded == 0 && e.ndeleted == 0);
    CHECK(tu_count_files(dir, ".sst") == 2); /* every output was removed */
    CHECK(tu_count_files(dir, ".tmp") == 0);
    edit_free(&e);
    compaction_free(c);
    /* and the compaction can run again; the 1-byte target gives one key per file */
    run_result rr = run_and_apply(vs, vset_compact_range(vs, 0, NULL, NULL, &busy), &r);
    CHECK(rr.added == 40);
    CHECK(tu_count_files(dir, ".sst") == 40);
    vset_close(vs);
    tu_rmtree(dir);
}

int main(void)
{
    tu_seed_init();
    test_pick_and_busy();
    test_l0_closure_and_levels();
    test_tombstone_base_level();
    test_drop_upkeep();
    test_failure_cleanup();
    test_partitions();
    test_pace();
    test_flush_drops_hidden_values();
    for (int round = 0; round < 40; round++)
        random_round(round);
    TU_DONE("test_compaction");
}
