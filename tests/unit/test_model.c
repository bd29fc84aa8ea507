/*
 * test_model.c -- randomized model test of the whole engine through engine/kv.h.
 *
 * Thousands of random operations (put, put_ttl with expiry before/after a controlled read
 * time, delete, range delete, batches, gets at the latest sequence / at old sequences / at
 * in-memory and named snapshots, bounded and prefixed iteration in both directions, kv_history,
 * flush, compact_range, close + reopen) run against the engine and against a plain in-memory model
 * that keeps every version of every key with its sequence. A small memtable and small tables
 * make flushes and compactions frequent; a long history window keeps every version readable.
 *
 * Model invariants (what the engine must match):
 *   - every write op gets a sequence greater than all earlier ones; a batch's ops get
 *     consecutive sequences in order and kv_write returns the last one;
 *   - a read at sequence S and time T returns the newest version with seq <= S, unless it is
 *     a deletion or a TTL version with expire_at_ms <= T, in which case -ENOENT;
 *   - kv_history lists every version newest first (history window covers them all);
 *   - named snapshots and all data survive close + reopen.
 * Values are derived from (key, seq, length) so the model stores no bytes, yet every
 * returned value is compared byte for byte.
 *
 * KVFS_SEED=N repeats a run; KVFS_MODEL_OPS=N changes the number of operations.
 */
#include "kv.h"
#include "testutil.h"

#include <signal.h>

#define NKEYS 300
#define MAX_SNAPS 4
#define MAX_NAMED 4
#define MAX_BATCH 6

enum { V_PUT = 1, V_DEL = 2 };

typedef struct mver {
    uint64_t seq;
    uint64_t expire; /* 0 = none */
    uint64_t vid;    /* unique write number: the value bytes derive from (key, vid, len) */
    uint32_t len;
    int kind;
} mver;

typedef struct mkey {
    uint8_t k[24];
    size_t kl;
    mver *v;
    size_t nv, cap;
} mkey;

static mkey keys[NKEYS];
static int order[NKEYS];  /* key ids in key order */
static uint64_t last_seq; /* model: newest sequence assigned */
static uint64_t ctl_now;  /* controlled clock used for expiry judgements */
static uint64_t next_vid = 1;
static long op_no;
static const char *op_name = "";

typedef struct msnap {
    kv_snapshot *s;
    uint64_t seq;
} msnap;
static msnap snaps[MAX_SNAPS];
static int nsnaps;

typedef struct mnamed {
    char name[32];
    uint64_t seq;
} mnamed;
static mnamed named[MAX_NAMED];
static int nnamed;
static int named_counter;

static kv_db *db;
static char dir[600];
static kv_options opts;

#define FAIL_CTX()                                                                                 \
    fprintf(stderr, "model test: op #%ld (%s), seed %" PRIu64 "\n", op_no, op_name, tu_seed)

/* ------------------------------------------------------------ model helpers ---- */

static uint64_t real_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int bytes_cmp(const void *a, size_t al, const void *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c)
        return c;
    return al < bl ? -1 : al > bl ? 1 : 0;
}

static int order_cmp(const void *a, const void *b)
{
    const mkey *x = &keys[*(const int *)a], *y = &keys[*(const int *)b];
    return bytes_cmp(x->k, x->kl, y->k, y->kl);
}

static void keys_init(void)
{
    static const char *const pre[] = {"a", "b", "b\0", "c\xff"};
    static const size_t prel[] = {1, 1, 2, 2};
    for (int i = 0; i < NKEYS; i++) {
        mkey *m = &keys[i];
        int g = i % 4;
        memcpy(m->k, pre[g], prel[g]);
        m->kl = prel[g];
        m->kl += (size_t)snprintf((char *)m->k + m->kl, sizeof m->k - m->kl, "%04d", i * 7);
        if (i % 9 == 0) /* some keys are a prefix of others: add a longer sibling */
            m->k[m->kl++] = 0;
        order[i] = i;
    }
    qsort(order, NKEYS, sizeof order[0], order_cmp);
    for (int i = 1; i < NKEYS; i++)
        CHECK(order_cmp(&order[i - 1], &order[i]) < 0);
}

static void gen_value(int kid, uint64_t vid, uint32_t len, uint8_t *out)
{
    uint64_t x = (uint64_t)kid * 0x9E3779B97F4A7C15ull ^ vid * 0xC2B2AE3D27D4EB4Full ^ len;
    x |= 1;
    for (uint32_t i = 0; i < len; i++) {
        if ((i & 7) == 0) {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
        }
        /* half the bytes compress well, half do not */
        out[i] = (i & 64) ? (uint8_t)('a' + (i % 13)) : (uint8_t)(x >> ((i & 7) * 8));
    }
}

static void add_version(int kid, uint64_t seq, int kind, uint64_t expire, uint32_t len,
                        uint64_t vid)
{
    mkey *m = &keys[kid];
    if (m->nv == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        CHECK(m->v != NULL);
    }
    mver *v = &m->v[m->nv++];
    v->seq = seq;
    v->kind = kind;
    v->expire = expire;
    v->len = len;
    v->vid = vid;
}

/* The visible version of kid at (seq, T), or NULL. */
static const mver *model_get(int kid, uint64_t seq, uint64_t t)
{
    const mkey *m = &keys[kid];
    for (size_t i = m->nv; i-- > 0;) {
        const mver *v = &m->v[i];
        if (v->seq > seq)
            continue;
        if (v->kind == V_DEL)
            return NULL;
        if (v->expire && v->expire <= t)
            return NULL;
        return v;
    }
    return NULL;
}

static uint32_t rand_len(void)
{
    uint64_t r = tu_rand_below(100);
    if (r < 5)
        return 0;
    if (r < 80)
        return (uint32_t)tu_rand_below(200);
    if (r < 97)
        return 200 + (uint32_t)tu_rand_below(4000);
    return 20000 + (uint32_t)tu_rand_below(20000);
}

static uint64_t rand_expire(void)
{
    uint64_t r = tu_rand_below(10);
    if (r == 0)
        return 5000; /* long past in real time too */
    /* around the controlled clock: some already expired, some not yet */
    return ctl_now - 3000 + tu_rand_below(6000);
}

/* ---------------------------------------------------------- engine checks ---- */

static uint8_t *vbuf;

static void check_value(int kid, const mver *v, const void *got, size_t glen, const char *what)
{
    if (glen != v->len) {
        FAIL_CTX();
        fprintf(stderr, "%s: key #%d value length %zu, want %u (version seq %" PRIu64 ")\n", what,
                kid, glen, v->len, v->seq);
    }
    CHECK(glen == v->len);
    gen_value(kid, v->vid, v->len, vbuf);
    if (v->len && memcmp(got, vbuf, v->len) != 0) {
        FAIL_CTX();
        fprintf(stderr, "%s: key #%d value bytes differ (version seq %" PRIu64 ")\n", what, kid,
                v->seq);
    }
    CHECK(v->len == 0 || memcmp(got, vbuf, v->len) == 0);
}

/* kv_get of kid under ro (seq = model seq for the model side) compared with the model. */
static void check_get(int kid, const kv_readopts *ro, uint64_t mseq, const char *what)
{
    const mver *want = model_get(kid, mseq, ro->time_ms);
    void *val = NULL;
    size_t vl = 0;
    kv_entry_info info;
    int rc = kv_get(db, ro, keys[kid].k, keys[kid].kl, &val, &vl, &info);
    if (!want) {
        if (rc != -ENOENT) {
            FAIL_CTX();
            fprintf(stderr,
                    "%s: key #%d at seq %" PRIu64 " time %" PRIu64
                    ": want -ENOENT, got %d (%s), info.seq %" PRIu64 "\n",
                    what, kid, mseq, ro->time_ms, rc, rc < 0 ? kv_last_error() : "",
                    rc == 0 ? info.seq : 0);
        }
        CHECK_RC(rc, -ENOENT);
        return;
    }
    if (rc != 0) {
        FAIL_CTX();
        fprintf(stderr,
                "%s: key #%d at seq %" PRIu64 " time %" PRIu64 ": want version seq %" PRIu64
                ", got %d\n",
                what, kid, mseq, ro->time_ms, want->seq, rc);
    }
    CHECK_OK(rc);
    if (info.seq != want->seq || info.expire_at_ms != want->expire || info.value_len != vl) {
        FAIL_CTX();
        fprintf(stderr,
                "%s: key #%d: info seq %" PRIu64 " expire %" PRIu64 " len %zu, want seq %" PRIu64
                " expire %" PRIu64 " len %u\n",
                what, kid, info.seq, info.expire_at_ms, info.value_len, want->seq, want->expire,
                want->len);
    }
    CHECK(info.seq == want->seq && info.expire_at_ms == want->expire && info.value_len == vl);
    check_value(kid, want, val, vl, what);
    free(val);
}

static int in_bounds(int kid, const kv_iter_opts *io)
{
    const mkey *m = &keys[kid];
    if (io->lower && bytes_cmp(m->k, m->kl, io->lower, io->lower_len) < 0)
        return 0;
    if (io->upper && bytes_cmp(m->k, m->kl, io->upper, io->upper_len) >= 0)
        return 0;
    if (io->prefix && (m->kl < io->prefix_len || memcmp(m->k, io->prefix, io->prefix_len) != 0))
        return 0;
    return 1;
}

static void check_iter_entry(kv_iter *it, int kid, uint64_t mseq, uint64_t t, const char *what)
{
    if (!kv_iter_valid(it)) {
        FAIL_CTX();
        fprintf(stderr, "%s: iterator ended (status %d %s), want key #%d\n", what,
                kv_iter_status(it), kv_last_error(), kid);
    }
    CHECK(kv_iter_valid(it));
    size_t kl, vl;
    const void *k = kv_iter_key(it, &kl);
    if (kl != keys[kid].kl || memcmp(k, keys[kid].k, kl) != 0) {
        FAIL_CTX();
        fprintf(stderr, "%s: iterator key differs, want key #%d\n", what, kid);
    }
    CHECK(kl == keys[kid].kl && memcmp(k, keys[kid].k, kl) == 0);
    const mver *want = model_get(kid, mseq, t);
    CHECK(want != NULL);
    const void *v = kv_iter_value(it, &vl);
    kv_entry_info info;
    kv_iter_info(it, &info);
    if (info.seq != want->seq) {
        FAIL_CTX();
        fprintf(stderr, "%s: key #%d: iterator version seq %" PRIu64 ", want %" PRIu64 "\n", what,
                kid, info.seq, want->seq);
    }
    CHECK(info.seq == want->seq && info.expire_at_ms == want->expire);
    check_value(kid, want, v, vl, what);
}

static void check_iter_end(kv_iter *it, const char *what)
{
    if (kv_iter_valid(it)) {
        size_t kl;
        const uint8_t *k = kv_iter_key(it, &kl);
        FAIL_CTX();
        fprintf(stderr, "%s: iterator has extra key (len %zu, '%.*s')\n", what, kl, (int)kl,
                (const char *)k);
    }
    CHECK(!kv_iter_valid(it));
    if (kv_iter_status(it) != 0)
        FAIL_CTX();
    CHECK_OK(kv_iter_status(it));
}

/* Random bounds from key bytes, random prefix from the key groups. */
static void rand_bounds(kv_iter_opts *io, uint8_t *lo, uint8_t *hi)
{
    static const char *const pre[] = {"a", "b", "b\0", "c\xff", "a00", "b\0001", "c", "zz"};
    static const size_t prel[] = {1, 1, 2, 2, 3, 3, 1, 2};
    uint64_t r = tu_rand_below(8);
    if (r & 1) {
        const mkey *m = &keys[tu_rand_below(NKEYS)];
        size_t n = 1 + tu_rand_below(m->kl);
        memcpy(lo, m->k, n);
        io->lower = lo;
        io->lower_len = n;
    }
    if (r & 2) {
        const mkey *m = &keys[tu_rand_below(NKEYS)];
        size_t n = 1 + tu_rand_below(m->kl);
        memcpy(hi, m->k, n);
        io->upper = hi;
        io->upper_len = n;
    }
    if (r & 4) {
        size_t p = tu_rand_below(8);
        io->prefix = pre[p];
        io->prefix_len = prel[p];
    }
}

/* Iterates under ro (model seq mseq) with random bounds in a random manner. */
static void check_iter(const kv_readopts *ro, uint64_t mseq, const char *what)
{
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    io.ro = *ro;
    uint8_t lo[32], hi[32];
    rand_bounds(&io, lo, hi);
    int exp[NKEYS], n = 0;
    for (int i = 0; i < NKEYS; i++) {
        int kid = order[i];
        if (in_bounds(kid, &io) && model_get(kid, mseq, ro->time_ms))
            exp[n++] = kid;
    }
    kv_iter *it = NULL;
    int rc = kv_iter_new(db, &io, &it);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    uint64_t mode = tu_rand_below(4);
    if (mode == 0) {
        kv_iter_seek_first(it);
        for (int i = 0; i < n; i++, kv_iter_next(it))
            check_iter_entry(it, exp[i], mseq, ro->time_ms, what);
        check_iter_end(it, what);
    } else if (mode == 1) {
        kv_iter_seek_last(it);
        for (int i = n - 1; i >= 0; i--, kv_iter_prev(it))
            check_iter_entry(it, exp[i], mseq, ro->time_ms, what);
        check_iter_end(it, what);
    } else {
        /* seek to a random key, walk a few steps one way, then the other */
        const mkey *m = &keys[tu_rand_below(NKEYS)];
        size_t sl = 1 + tu_rand_below(m->kl);
        int j = 0;
        while (j < n && bytes_cmp(keys[exp[j]].k, keys[exp[j]].kl, m->k, sl) < 0)
            j++;
        kv_iter_seek(it, m->k, sl);
        int steps = (int)tu_rand_below(8);
        for (int s = 0; s <= steps && j < n; s++, j++) {
            check_iter_entry(it, exp[j], mseq, ro->time_ms, what);
            if (s < steps && j + 1 < n)
                kv_iter_next(it);
            else
                break;
        }
        if (j >= n) {
            check_iter_end(it, what);
        } else {
            for (int s = 0; s < 5; s++) {
                kv_iter_prev(it);
                j--;
                if (j < 0) {
                    check_iter_end(it, what);
                    break;
                }
                check_iter_entry(it, exp[j], mseq, ro->time_ms, what);
            }
        }
    }
    kv_iter_free(it);
}

static void check_history(int kid)
{
    kv_version *vs = NULL;
    size_t n = 0;
    int rc = kv_history(db, keys[kid].k, keys[kid].kl, &vs, &n);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    const mkey *m = &keys[kid];
    if (n != m->nv) {
        FAIL_CTX();
        fprintf(stderr, "kv_history key #%d: %zu versions, want %zu\n", kid, n, m->nv);
    }
    CHECK(n == m->nv);
    for (size_t i = 0; i < n; i++) {
        const mver *w = &m->v[m->nv - 1 - i];
        mver tomb;
        /* A value that expired before the history window (wall clock - history_ms) may be
         * kept by compaction as a deletion at the same seq: no read inside the window can
         * tell the difference, and kv_history then shows it as one. */
        if (w->expire && w->expire <= real_now_ms() - opts.history_ms && vs[i].deleted) {
            tomb = *w;
            tomb.kind = V_DEL;
            tomb.expire = 0;
            w = &tomb;
        }
        if (vs[i].seq != w->seq || vs[i].deleted != (w->kind == V_DEL) ||
            vs[i].size != (w->kind == V_DEL ? 0 : w->len) || vs[i].expire_at_ms != w->expire) {
            FAIL_CTX();
            fprintf(stderr,
                    "kv_history key #%d entry %zu: seq %" PRIu64 " del %d size %" PRIu64
                    " exp %" PRIu64 "; want seq %" PRIu64 " del %d size %u exp %" PRIu64 "\n",
                    kid, i, vs[i].seq, vs[i].deleted, vs[i].size, vs[i].expire_at_ms, w->seq,
                    w->kind == V_DEL, w->len, w->expire);
        }
        CHECK(vs[i].seq == w->seq);
        CHECK(vs[i].deleted == (w->kind == V_DEL));
        CHECK(vs[i].size == (w->kind == V_DEL ? 0 : w->len));
        CHECK(vs[i].expire_at_ms == w->expire);
    }
    free(vs);
}

static void check_named_list(void)
{
    kv_snapinfo *list = NULL;
    size_t n = 0;
    CHECK_OK(kv_named_snapshot_list(db, &list, &n));
    if (n != (size_t)nnamed) {
        FAIL_CTX();
        fprintf(stderr, "named snapshot list has %zu entries, want %d\n", n, nnamed);
    }
    CHECK(n == (size_t)nnamed);
    for (size_t i = 0; i < n; i++) {
        if (i)
            CHECK(strcmp(list[i - 1].name, list[i].name) < 0);
        int found = 0;
        for (int j = 0; j < nnamed && j < MAX_NAMED; j++)
            if (!strcmp(named[j].name, list[i].name)) {
                CHECK(named[j].seq == list[i].seq);
                found = 1;
            }
        CHECK(found);
    }
    free(list);
}

/* --------------------------------------------------------------- operations ---- */

static void note_seq_single(void)
{
    uint64_t s = kv_last_seq(db);
    if (s <= last_seq) {
        FAIL_CTX();
        fprintf(stderr, "kv_last_seq %" PRIu64 " did not advance past %" PRIu64 "\n", s, last_seq);
    }
    CHECK(s > last_seq);
    last_seq = s;
}

static void op_put(int ttl)
{
    int kid = (int)tu_rand_below(NKEYS);
    uint32_t len = rand_len();
    uint64_t exp = ttl ? rand_expire() : 0;
    uint64_t vid = next_vid++;
    gen_value(kid, vid, len, vbuf);
    int rc = ttl ? kv_put_ttl(db, keys[kid].k, keys[kid].kl, vbuf, len, exp, 0)
                 : kv_put(db, keys[kid].k, keys[kid].kl, vbuf, len, 0);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    note_seq_single();
    add_version(kid, last_seq, V_PUT, exp, len, vid);
}

static void op_delete(void)
{
    int kid = (int)tu_rand_below(NKEYS);
    int rc = kv_delete(db, keys[kid].k, keys[kid].kl, 0);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    note_seq_single();
    add_version(kid, last_seq, V_DEL, 0, 0, 0);
}

/* kv_write of b (then freed); returns the sequence of its last op. */
static uint64_t write_batch(kv_batch *b)
{
    uint64_t seq = 0;
    int rc = kv_write(db, b, 0, &seq);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    kv_batch_free(b);
    return seq;
}

static void op_batch(void)
{
    kv_batch *b = kv_batch_new();
    CHECK(b != NULL);
    int n = 2 + (int)tu_rand_below(MAX_BATCH - 1);
    int kid[MAX_BATCH], kind[MAX_BATCH];
    uint64_t exp[MAX_BATCH];
    uint32_t len[MAX_BATCH];
    uint64_t vid[MAX_BATCH];
    uint8_t *tmp = malloc(40000);
    CHECK(tmp != NULL);
    for (int i = 0; i < n; i++) {
        kid[i] = (i > 0 && tu_rand_below(5) == 0) ? kid[i - 1] : (int)tu_rand_below(NKEYS);
        uint64_t r = tu_rand_below(10);
        kind[i] = r < 2 ? V_DEL : V_PUT;
        exp[i] = (kind[i] == V_PUT && r >= 8) ? rand_expire() : 0;
        len[i] = kind[i] == V_PUT ? rand_len() : 0;
        vid[i] = next_vid++;
        if (kind[i] == V_DEL) {
            CHECK_OK(kv_batch_delete(b, keys[kid[i]].k, keys[kid[i]].kl));
        } else {
            gen_value(kid[i], vid[i], len[i], tmp);
            if (exp[i])
                CHECK_OK(kv_batch_put_ttl(b, keys[kid[i]].k, keys[kid[i]].kl, tmp, len[i], exp[i]));
            else
                CHECK_OK(kv_batch_put(b, keys[kid[i]].k, keys[kid[i]].kl, tmp, len[i]));
        }
    }
    free(tmp);
    CHECK(kv_batch_count(b) == (size_t)n);
    uint64_t seq = write_batch(b);
    /* the batch's ops get seq-n+1 .. seq, all after every earlier write */
    if (seq < (uint64_t)n || seq - (uint64_t)n + 1 <= last_seq || kv_last_seq(db) != seq) {
        FAIL_CTX();
        fprintf(stderr,
                "kv_write of %d ops returned seq %" PRIu64 " (kv_last_seq %" PRIu64
                "), previous last seq %" PRIu64 "\n",
                n, seq, kv_last_seq(db), last_seq);
    }
    CHECK(seq >= (uint64_t)n && seq - (uint64_t)n + 1 > last_seq);
    CHECK(kv_last_seq(db) == seq);
    for (int i = 0; i < n; i++)
        add_version(kid[i], seq - (uint64_t)n + 1 + (uint64_t)i, kind[i], exp[i], len[i], vid[i]);
    last_seq = seq;
}

/* A range deletion [lo, hi): hi is lo with its last byte raised (a prefix range) or another
 * key above lo. In the model every key of the range that has versions gets a deletion at the
 * op's seq (kv_history lists a range deletion for a key that had a version before it).
 * Sometimes a put into the range follows in the same batch: it is newer, so it shows. */
static void op_range_delete(void)
{
    uint8_t lo[24], hi[25];
    const mkey *a = &keys[tu_rand_below(NKEYS)];
    size_t lol = 1 + tu_rand_below(a->kl), hil;
    memcpy(lo, a->k, lol);
    const mkey *b = &keys[tu_rand_below(NKEYS)];
    if (tu_rand_below(2) && bytes_cmp(b->k, b->kl, lo, lol) > 0) {
        memcpy(hi, b->k, b->kl);
        hil = b->kl;
    } else {
        memcpy(hi, lo, lol);
        hil = lol;
        if (hi[hil - 1] == 0xff)
            hi[hil++] = 0; /* lo + "\0" is above lo too */
        else
            hi[hil - 1]++;
    }
    kv_batch *bt = kv_batch_new();
    CHECK(bt != NULL);
    CHECK_OK(kv_batch_delete_range(bt, lo, lol, hi, hil));
    int put_kid = -1;
    uint32_t len = 0;
    uint64_t vid = 0;
    if (tu_rand_below(3) == 0) {
        put_kid = (int)tu_rand_below(NKEYS);
        len = rand_len();
        vid = next_vid++;
        gen_value(put_kid, vid, len, vbuf);
        CHECK_OK(kv_batch_put(bt, keys[put_kid].k, keys[put_kid].kl, vbuf, len));
    }
    uint64_t seq = write_batch(bt);
    uint64_t dseq = put_kid >= 0 ? seq - 1 : seq;
    CHECK(dseq > last_seq);
    for (int kid = 0; kid < NKEYS; kid++) {
        const mkey *m = &keys[kid];
        if (m->nv && bytes_cmp(m->k, m->kl, lo, lol) >= 0 && bytes_cmp(m->k, m->kl, hi, hil) < 0)
            add_version(kid, dseq, V_DEL, 0, 0, 0);
    }
    if (put_kid >= 0)
        add_version(put_kid, seq, V_PUT, 0, len, vid);
    last_seq = seq;
}

static uint64_t read_time(void)
{
    uint64_t r = tu_rand_below(10);
    if (r < 7)
        return ctl_now;
    return ctl_now - 4000 + tu_rand_below(8000);
}

static void op_get_latest(void)
{
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.time_ms = read_time();
    check_get((int)tu_rand_below(NKEYS), &ro, last_seq, "get latest");
}

static void op_get_old(void)
{
    if (!last_seq)
        return;
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.seq = 1 + tu_rand_below(last_seq);
    ro.time_ms = read_time();
    /* read a few keys, including ones written near that seq */
    for (int i = 0; i < 4; i++)
        check_get((int)tu_rand_below(NKEYS), &ro, ro.seq, "get at old seq");
}

static void op_snap_acquire(void)
{
    if (nsnaps == MAX_SNAPS)
        return;
    uint64_t want = 0;
    if (last_seq && tu_rand_below(3) == 0)
        want = 1 + tu_rand_below(last_seq); /* an old sequence: the history window keeps it */
    kv_snapshot *s = NULL;
    int rc = kv_snapshot_acquire(db, want, &s);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    uint64_t sseq = kv_snapshot_seq(s);
    CHECK(sseq == (want ? want : last_seq));
    snaps[nsnaps].s = s;
    snaps[nsnaps].seq = sseq;
    nsnaps++;
}

static void op_snap_release(void)
{
    if (!nsnaps)
        return;
    int i = (int)tu_rand_below((uint64_t)nsnaps);
    kv_snapshot_release(db, snaps[i].s);
    snaps[i] = snaps[--nsnaps];
}

static void op_snap_read(void)
{
    if (!nsnaps)
        return;
    msnap *s = &snaps[tu_rand_below((uint64_t)nsnaps)];
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.snapshot = s->s;
    ro.time_ms = read_time();
    if (tu_rand_below(2)) {
        for (int i = 0; i < 4; i++)
            check_get((int)tu_rand_below(NKEYS), &ro, s->seq, "get at snapshot");
    } else {
        check_iter(&ro, s->seq, "iterate at snapshot");
    }
}

static void op_named_create(void)
{
    if (nnamed == MAX_NAMED)
        return;
    mnamed *n = &named[nnamed];
    snprintf(n->name, sizeof n->name, "snap-%03d", named_counter++);
    kv_snapinfo info;
    int rc = kv_named_snapshot_create(db, n->name, &info);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
    CHECK(info.seq == last_seq);
    CHECK(strcmp(info.name, n->name) == 0);
    n->seq = info.seq;
    nnamed++;
}

static void op_named_delete(void)
{
    if (!nnamed)
        return;
    int i = (int)tu_rand_below((uint64_t)nnamed);
    CHECK_OK(kv_named_snapshot_delete(db, named[i].name));
    kv_snapinfo info;
    CHECK_RC(kv_named_snapshot_get(db, named[i].name, &info), -ENOENT);
    named[i] = named[--nnamed];
}

static void op_named_read(void)
{
    if (!nnamed)
        return;
    mnamed *n = &named[tu_rand_below((uint64_t)nnamed)];
    kv_snapinfo info;
    CHECK_OK(kv_named_snapshot_get(db, n->name, &info));
    CHECK(info.seq == n->seq);
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.seq = info.seq;
    ro.time_ms = read_time();
    if (info.seq == 0)
        return; /* seq 0 means "latest" in readopts */
    if (tu_rand_below(2)) {
        for (int i = 0; i < 4; i++)
            check_get((int)tu_rand_below(NKEYS), &ro, info.seq, "get at named snapshot");
    } else {
        check_iter(&ro, info.seq, "iterate at named snapshot");
    }
}

static void op_iter_latest(void)
{
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.time_ms = read_time();
    check_iter(&ro, last_seq, "iterate latest");
}

static void op_compact(void)
{
    if (tu_rand_below(3) == 0) {
        CHECK_OK(kv_compact_range(db, NULL, 0, NULL, 0));
        return;
    }
    const mkey *a = &keys[tu_rand_below(NKEYS)], *b = &keys[tu_rand_below(NKEYS)];
    if (bytes_cmp(a->k, a->kl, b->k, b->kl) > 0) {
        const mkey *t = a;
        a = b;
        b = t;
    }
    int rc = kv_compact_range(db, a->k, a->kl, b->k, b->kl);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
}

static void store_open(void)
{
    db = NULL;
    int rc = kv_open(dir, &opts, &db);
    if (rc)
        FAIL_CTX();
    CHECK_OK(rc);
}

static void op_reopen(void)
{
    while (nsnaps)
        kv_snapshot_release(db, snaps[--nsnaps].s);
    CHECK_OK(kv_close(db));
    store_open();
    uint64_t s = kv_last_seq(db);
    if (s < last_seq) {
        FAIL_CTX();
        fprintf(stderr, "after reopen kv_last_seq is %" PRIu64 ", before close %" PRIu64 "\n", s,
                last_seq);
    }
    CHECK(s >= last_seq);
    last_seq = s;
    check_named_list();
}

/* Every key at the latest sequence, at every snapshot and named snapshot, and a full scan. */
static void full_check(const char *what)
{
    op_name = what;
    kv_readopts ro;
    memset(&ro, 0, sizeof ro);
    ro.time_ms = ctl_now;
    for (int i = 0; i < NKEYS; i++)
        check_get(i, &ro, last_seq, what);
    kv_iter_opts io;
    memset(&io, 0, sizeof io);
    io.ro = ro;
    kv_iter *it = NULL;
    CHECK_OK(kv_iter_new(db, &io, &it));
    kv_iter_seek_first(it);
    for (int i = 0; i < NKEYS; i++) {
        if (!model_get(order[i], last_seq, ctl_now))
            continue;
        check_iter_entry(it, order[i], last_seq, ctl_now, what);
        kv_iter_next(it);
    }
    check_iter_end(it, what);
    kv_iter_free(it);
    for (int s = 0; s < nsnaps; s++) {
        ro.snapshot = snaps[s].s;
        for (int i = 0; i < NKEYS; i++)
            check_get(i, &ro, snaps[s].seq, what);
    }
    ro.snapshot = NULL;
    for (int s = 0; s < nnamed; s++) {
        ro.seq = named[s].seq;
        if (!ro.seq)
            continue;
        for (int i = 0; i < NKEYS; i++)
            check_get(i, &ro, named[s].seq, what);
    }
    for (int i = 0; i < NKEYS; i += 7)
        check_history(i);
    check_named_list();
}

static void print_report(void *arg, const char *line)
{
    (void)arg;
    fprintf(stderr, "kv_verify: %s\n", line);
}

int main(void)
{
    tu_seed_init();
    signal(SIGPIPE, SIG_IGN);
    long nops = 4000;
    const char *e = getenv("KVFS_MODEL_OPS");
    if (e)
        nops = atol(e);
    vbuf = malloc(64 << 10);
    CHECK(vbuf != NULL);
    keys_init();
    snprintf(dir, sizeof dir, "%s", tu_tmpdir("model"));
    kv_options_init(&opts);
    opts.memtable_bytes = 64 << 10;
    opts.table_bytes = 64 << 10;
    opts.block_bytes = 2048;
    opts.history_ms = 7ull * 86400 * 1000;
    opts.wal_segment_bytes = 256 << 10;
    opts.partition_prefix_bytes = (size_t)tu_rand_below(3); /* 0: off; 2 splits "b" from "b\\0" */
    store_open();
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ctl_now = (uint64_t)ts.tv_sec * 1000 + 86400000ull; /* a day ahead of the wall clock */

    for (op_no = 0; op_no < nops; op_no++) {
        ctl_now += tu_rand_below(30);
        uint64_t r = tu_rand_below(1000);
        if (r < 235) {
            op_name = "put";
            op_put(0);
        } else if (r < 250) {
            op_name = "range delete";
            op_range_delete();
        } else if (r < 330) {
            op_name = "put_ttl";
            op_put(1);
        } else if (r < 410) {
            op_name = "delete";
            op_delete();
        } else if (r < 490) {
            op_name = "batch";
            op_batch();
        } else if (r < 650) {
            op_name = "get latest";
            op_get_latest();
        } else if (r < 720) {
            op_name = "get old seq";
            op_get_old();
        } else if (r < 780) {
            op_name = "iterate";
            op_iter_latest();
        } else if (r < 800) {
            op_name = "snapshot acquire";
            op_snap_acquire();
        } else if (r < 850) {
            op_name = "snapshot read";
            op_snap_read();
        } else if (r < 860) {
            op_name = "snapshot release";
            op_snap_release();
        } else if (r < 870) {
            op_name = "named create";
            op_named_create();
        } else if (r < 875) {
            op_name = "named delete";
            op_named_delete();
        } else if (r < 905) {
            op_name = "named read";
            op_named_read();
        } else if (r < 930) {
            op_name = "history";
            check_history((int)tu_rand_below(NKEYS));
        } else if (r < 950) {
            op_name = "flush";
            int rc = kv_flush(db);
            if (rc)
                FAIL_CTX();
            CHECK_OK(rc);
        } else if (r < 965) {
            op_name = "compact_range";
            op_compact();
        } else if (r < 972) {
            op_name = "reopen";
            op_reopen();
        } else {
            op_name = "get latest";
            op_get_latest();
        }
        if (op_no % 1000 == 999)
            full_check("periodic full check");
    }
    full_check("final check");
    int problems = kv_verify(db, print_report, NULL);
    if (problems != 0)
        fprintf(stderr, "kv_verify: %d (%s)\n", problems, kv_last_error());
    CHECK(problems == 0);
    op_reopen();
    full_check("final check after reopen");
    CHECK_OK(kv_close(db));
    tu_rmtree(dir);
    for (int i = 0; i < NKEYS; i++)
        free(keys[i].v);
    free(vbuf);
    TU_DONE("test_model");
}
